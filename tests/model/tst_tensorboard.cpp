// TensorBoard event files (torch-free): CRC-32C against published vectors and an independent
// bitwise implementation; the TFRecord framing and the Event bytes checked by hand against the
// field numbers of TensorFlow's event.proto / summary.proto; round trip; corrupted and truncated
// files; and, where Python's tensorboard package is importable, TensorBoard's own reader.
#include <QtTest>

#include <QFile>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>

#include <unistd.h>

#include <cstring>
#include <ctime>
#include <random>
#include <stdexcept>

#include "tensorboard.h"

namespace {

// Bit by bit, straight from the definition (reflected polynomial 0x82F63B78, init and final xor
// 0xFFFFFFFF), sharing no code or table with vit::crc32c.
uint32_t reference_crc32c(const QByteArray& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) {
    crc ^= static_cast<unsigned char>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

QByteArray le_bytes(uint64_t value, int n) {
  QByteArray out;
  for (int i = 0; i < n; ++i) out.append(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}
uint64_t le_value(const QByteArray& bytes, qsizetype at, int n) {
  uint64_t value = 0;
  for (int i = 0; i < n; ++i) value |= uint64_t(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return value;
}
QByteArray varint(uint64_t value) {
  QByteArray out;
  do {
    const auto low = static_cast<char>(value & 0x7F);
    value >>= 7;
    out.append(value ? static_cast<char>(low | 0x80) : low);
  } while (value);
  return out;
}
QByteArray double_bytes(double v) {  // protobuf fixed64: little endian IEEE 754
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  return le_bytes(bits, 8);
}
QByteArray float_bytes(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return le_bytes(bits, 4);
}
// A length-delimited protobuf field: key (field << 3 | wire type 2), length, bytes.
QByteArray delimited(int field, const QByteArray& payload) {
  return varint(uint64_t(field) << 3 | 2) + varint(payload.size()) + payload;
}

QByteArray read_all(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return f.readAll();
}
void write_all(const QString& path, const QByteArray& bytes) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
  QCOMPARE(f.write(bytes), bytes.size());
}

// A second, independent TFRecord reader: each record's data, each frame's length and CRCs checked
// with the reference CRC. Returns false and says why on a bad frame.
struct Record {
  qsizetype offset;  // of the header
  QByteArray data;
};
bool split_records(const QByteArray& file, QList<Record>* records, QString* error) {
  qsizetype at = 0;
  auto bad = [&](const char* why) {
    *error = QString("record at byte %1: %2").arg(at).arg(why);
    return false;
  };
  while (at < file.size()) {
    if (file.size() - at < 16) return bad("shorter than a frame");
    if (le_value(file, at + 8, 4) != masked(reference_crc32c(file.mid(at, 8))))
      return bad("length CRC mismatch");
    const auto length = qsizetype(le_value(file, at, 8));
    if (file.size() - at - 16 < length) return bad("longer than the file");
    const QByteArray data = file.mid(at + 12, length);
    if (le_value(file, at + 12 + length, 4) != masked(reference_crc32c(data)))
      return bad("data CRC mismatch");
    records->append({at, data});
    at += 16 + length;
  }
  return true;
}

// The fixture the corruption tests damage: the version record, then
// add_scalar("loss", 0.5, 300, 1234.5), whose Event is 27 bytes (9 wall_time + 3 step +
// 2 + 13 summary, spelled out in recordFramingAndEventBytes).
constexpr int kFixtureEventSize = 27;
QString write_fixture(const QTemporaryDir& dir) {
  vit::TensorBoardWriter writer(dir.filePath("run").toStdString());
  writer.add_scalar("loss", 0.5, 300, 1234.5);
  return QString::fromStdString(writer.path());
}

// Runs read_scalar_events and returns the exception's message, or "" if it did not throw.
QString read_error(const QString& path) {
  try {
    vit::read_scalar_events(path.toStdString());
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

class TstTensorboard : public QObject {
  Q_OBJECT
 private slots:
  void crc32cKnownVectors_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<uint>("crc");
    QByteArray zeros(32, '\0'), ones(32, '\xFF'), up, down;
    for (int i = 0; i < 32; ++i) {
      up.append(char(i));
      down.append(char(31 - i));
    }
    // The CRC catalogue's check value, and the iSCSI vectors of RFC 3720 appendix B.4.
    QTest::newRow("123456789") << QByteArray("123456789") << 0xE3069283u;
    QTest::newRow("32 zeros") << zeros << 0x8A9136AAu;
    QTest::newRow("32 x 0xFF") << ones << 0x62A8AB43u;
    QTest::newRow("0..31") << up << 0x46DD794Eu;
    QTest::newRow("31..0") << down << 0x113FDB5Cu;
    QTest::newRow("empty") << QByteArray() << 0u;
  }
  void crc32cKnownVectors() {
    QFETCH(QByteArray, bytes);
    QFETCH(uint, crc);
    QCOMPARE(uint(vit::crc32c(bytes.constData(), size_t(bytes.size()))), crc);
    QCOMPARE(uint(reference_crc32c(bytes)), crc);  // the reference itself is right
  }

  void crc32cMatchesReferenceAndContinues() {
    std::mt19937 rng(42);
    QByteArray bytes;
    for (int i = 0; i < 1000; ++i) bytes.append(static_cast<char>(rng() & 0xFF));
    const uint32_t whole = vit::crc32c(bytes.constData(), size_t(bytes.size()));
    QCOMPARE(whole, reference_crc32c(bytes));
    for (const qsizetype split : {0, 1, 7, 500, 999, 1000}) {
      const uint32_t first = vit::crc32c(bytes.constData(), size_t(split));
      QCOMPARE(vit::crc32c(bytes.constData() + split, size_t(bytes.size() - split), first), whole);
    }
  }

  void fileNameAndNestedLogdir() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const auto before = std::time(nullptr);
    vit::TensorBoardWriter writer(dir.filePath("runs/exp1").toStdString());
    const auto after = std::time(nullptr);
    const QString path = QString::fromStdString(writer.path());
    QVERIFY(QFile::exists(path));
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    const QRegularExpression name(
        "^" + QRegularExpression::escape(dir.filePath("runs/exp1")) +
        "/events\\.out\\.tfevents\\.(\\d+)\\." + QRegularExpression::escape(host) + "\\." +
        QString::number(::getpid()) + "$");
    const auto match = name.match(path);
    QVERIFY2(match.hasMatch(), qPrintable(path));
    const auto seconds = match.captured(1).toLongLong();
    QVERIFY(seconds >= before && seconds <= after);
  }

  void scalarsRoundTrip() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    vit::TensorBoardWriter writer(dir.path().toStdString());
    const double before = std::time(nullptr);
    writer.add_scalar("train/loss", 2.5, 0, 1000.25);
    writer.add_scalar("train/acc", 0.125, 0, 1000.5);
    writer.add_scalar("train/loss", -1.75, int64_t(1) << 40, 1001.0);  // int64 steps survive
    writer.add_scalar("val/acc", 0.1, 7);                               // wall time: now
    writer.flush();
    const double after = std::time(nullptr) + 1;

    // Readable while the writer is still open, once flushed.
    const auto events = vit::read_scalar_events(writer.path());
    QCOMPARE(events.size(), size_t(4));
    QCOMPARE(QString::fromStdString(events[0].tag), QString("train/loss"));
    QCOMPARE(events[0].value, 2.5);
    QCOMPARE(events[0].step, int64_t(0));
    QCOMPARE(events[0].wall_time, 1000.25);
    QCOMPARE(QString::fromStdString(events[1].tag), QString("train/acc"));
    QCOMPARE(events[1].value, 0.125);
    QCOMPARE(events[1].wall_time, 1000.5);
    QCOMPARE(events[2].value, -1.75);
    QCOMPARE(events[2].step, int64_t(1) << 40);
    QCOMPARE(events[2].wall_time, 1001.0);
    QCOMPARE(QString::fromStdString(events[3].tag), QString("val/acc"));
    QCOMPARE(events[3].value, double(0.1f));  // stored as float, as simple_value is
    QCOMPARE(events[3].step, int64_t(7));
    QVERIFY2(events[3].wall_time >= before && events[3].wall_time <= after,
             qPrintable(QString::number(events[3].wall_time, 'f', 3)));
  }

  void firstRecordIsFileVersion() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const double before = std::time(nullptr);
    QString path;
    {
      vit::TensorBoardWriter writer(dir.path().toStdString());
      path = QString::fromStdString(writer.path());
    }
    const double after = std::time(nullptr) + 1;
    QList<Record> records;
    QString error;
    QVERIFY2(split_records(read_all(path), &records, &error), qPrintable(error));
    QCOMPARE(records.size(), 1);
    // Event { wall_time (1, fixed64) = now; file_version (3, length-delimited) = "brain.Event:2" }.
    // step 0 is proto3's default and is not written.
    const QByteArray& data = records[0].data;
    QCOMPARE(data.size(), 1 + 8 + 2 + 13);
    QCOMPARE(data[0], char(0x09));
    double wall_time;
    std::memcpy(&wall_time, data.constData() + 1, 8);  // x86-64 is little endian, as the file
    QVERIFY(wall_time >= before && wall_time <= after);
    QCOMPARE(data.mid(9), delimited(3, "brain.Event:2"));
    QVERIFY(vit::read_scalar_events(path.toStdString()).empty());
  }

  // The second record of the fixture, byte by byte. Field numbers from TensorFlow:
  // Event { wall_time = 1 (double), step = 2 (int64), summary = 5 }, Summary { value = 1 },
  // Summary.Value { tag = 1, simple_value = 2 (float) }.
  void recordFramingAndEventBytes() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = write_fixture(dir);
    const QByteArray file = read_all(path);
    QList<Record> records;
    QString error;
    QVERIFY2(split_records(file, &records, &error), qPrintable(error));
    QCOMPARE(records.size(), 2);

    const QByteArray value = delimited(1, "loss") + char(2 << 3 | 5) + float_bytes(0.5f);
    const QByteArray summary = delimited(1, value);
    const QByteArray event =
        char(1 << 3 | 1) + double_bytes(1234.5) + char(2 << 3 | 0) + varint(300) +
        delimited(5, summary);
    QCOMPARE(varint(300), QByteArray("\xAC\x02"));  // a two-byte varint, to exercise the encoding
    QCOMPARE(records[1].data.toHex(), event.toHex());
    QCOMPARE(event.size(), kFixtureEventSize);

    // The frame itself: length, masked CRC of the 8 length bytes, data, masked CRC of the data.
    const qsizetype at = records[1].offset;
    QCOMPARE(at, records[0].data.size() + 16);
    QCOMPARE(file.mid(at, 8), le_bytes(uint64_t(event.size()), 8));
    QCOMPARE(file.mid(at + 8, 4), le_bytes(masked(reference_crc32c(file.mid(at, 8))), 4));
    QCOMPARE(file.mid(at + 12 + event.size(), 4), le_bytes(masked(reference_crc32c(event)), 4));
    QCOMPARE(file.size(), at + 16 + event.size());
  }

  void corruptionIsDetected_data() {
    QTest::addColumn<int>("where");  // byte offset from the start of the second record; <0: first
    QTest::addColumn<QString>("what");
    QTest::newRow("length") << 0 << "length CRC";
    QTest::newRow("length CRC") << 9 << "length CRC";
    QTest::newRow("data") << 20 << "data CRC";
    QTest::newRow("data CRC") << -1 << "data CRC";  // the file's last byte
    QTest::newRow("first record's data") << -100 << "data CRC";
  }
  void corruptionIsDetected() {
    QFETCH(int, where);
    QFETCH(QString, what);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = write_fixture(dir);
    QByteArray file = read_all(path);
    QList<Record> records;
    QString error;
    QVERIFY2(split_records(file, &records, &error), qPrintable(error));
    QCOMPARE(records.size(), 2);
    const qsizetype at = where == -1 ? file.size() - 1
                         : where == -100 ? 15
                                         : records[1].offset + where;
    file[at] = static_cast<char>(file[at] ^ 0x10);
    write_all(path, file);
    error = read_error(path);
    QVERIFY2(!error.isEmpty(), "a corrupted file was read without error");
    QVERIFY2(error.contains(path), qPrintable(error));
    QVERIFY2(error.contains(what) && error.contains("corrupted"), qPrintable(error));
  }

  void truncationIsDetected_data() {
    QTest::addColumn<int>("cut");  // bytes cut from the end of the file
    QTest::newRow("last byte of the data CRC") << 1;
    QTest::newRow("whole data CRC") << 4;
    QTest::newRow("inside the data") << 7;
    QTest::newRow("header only") << kFixtureEventSize + 4;
    QTest::newRow("inside the header") << 16 + kFixtureEventSize - 5;
  }
  void truncationIsDetected() {
    QFETCH(int, cut);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = write_fixture(dir);
    QList<Record> records;
    QString error;
    QVERIFY2(split_records(read_all(path), &records, &error), qPrintable(error));
    QCOMPARE(records.last().data.size(), kFixtureEventSize);
    QVERIFY(QFile::resize(path, QFileInfo(path).size() - cut));
    error = read_error(path);
    QVERIFY2(!error.isEmpty(), "a truncated file was read without error");
    QVERIFY2(error.contains(path) && error.contains("truncated"), qPrintable(error));
  }

  void cutAtARecordBoundaryIsValid() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = write_fixture(dir);
    QVERIFY(QFile::resize(path, QFileInfo(path).size() - 16 - kFixtureEventSize));  // only the version record
    QVERIFY(vit::read_scalar_events(path.toStdString()).empty());
    QVERIFY(QFile::resize(path, 0));  // an empty file has no records, which is no error
    QVERIFY(vit::read_scalar_events(path.toStdString()).empty());
  }

  void garbageIsNotAnEvent() {
    // Valid framing around bytes that are no protobuf (field 0 is invalid).
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = dir.filePath("events.out.tfevents.garbage");
    const QByteArray data("\x00\x00\x00", 3);
    const QByteArray length = le_bytes(uint64_t(data.size()), 8);
    write_all(path, length + le_bytes(masked(reference_crc32c(length)), 4) + data +
                        le_bytes(masked(reference_crc32c(data)), 4));
    const QString error = read_error(path);
    QVERIFY2(error.contains(path) && error.contains("not a TensorBoard event"), qPrintable(error));
  }

  void missingFileNamesIt() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = dir.filePath("no-such-file");
    const QString error = read_error(path);
    QVERIFY2(error.contains(path), qPrintable(error));
  }

  void unusableLogdirNamesIt() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    write_all(dir.filePath("blocker"), "a file, not a directory");
    const QString logdir = dir.filePath("blocker/run");
    try {
      vit::TensorBoardWriter writer(logdir.toStdString());
      QFAIL("a logdir under a regular file was accepted");
    } catch (const std::runtime_error& e) {
      QVERIFY2(QString(e.what()).contains(logdir), e.what());
    }
  }

  void everyWriterStartsANewFile() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    // Same process and (almost surely) the same second: the same base name, so the second writer
    // must pick another name instead of truncating the first file.
    vit::TensorBoardWriter first(dir.path().toStdString());
    vit::TensorBoardWriter second(dir.path().toStdString());
    QVERIFY(first.path() != second.path());
    if (second.path().rfind(first.path(), 0) == 0)  // same second: the first free suffix
      QCOMPARE(QString::fromStdString(second.path()), QString::fromStdString(first.path()) + ".1");
    QVERIFY(QString::fromStdString(second.path()).contains("tfevents"));
    first.add_scalar("a", 1, 1, 10);
    second.add_scalar("b", 2, 2, 20);
    first.flush();
    second.flush();
    const auto a = vit::read_scalar_events(first.path());
    const auto b = vit::read_scalar_events(second.path());
    QCOMPARE(a.size(), size_t(1));
    QCOMPARE(b.size(), size_t(1));
    QCOMPARE(QString::fromStdString(a[0].tag), QString("a"));
    QCOMPARE(QString::fromStdString(b[0].tag), QString("b"));
  }

  // TensorBoard's own reader, when it is installed (Debian bookworm does not package it).
  void tensorboardReadsTheFile() {
    QProcess probe;
    probe.start("/usr/bin/python3", {"-c", "import tensorboard"});
    if (!probe.waitForFinished(60000) || probe.exitStatus() != QProcess::NormalExit ||
        probe.exitCode() != 0)
      QSKIP("python3 cannot import tensorboard; skipping the cross-check with TensorBoard");

    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QString path;
    {
      vit::TensorBoardWriter writer(dir.path().toStdString());
      writer.add_scalar("train/loss", 2.5, 1, 1000.25);
      writer.add_scalar("train/loss", 1.25, 2, 1000.5);
      writer.add_scalar("val/acc", 0.75, 2, 1000.75);
      path = QString::fromStdString(writer.path());
    }
    const char* script = R"(
import sys
from tensorboard.backend.event_processing import event_accumulator
acc = event_accumulator.EventAccumulator(sys.argv[1])
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for s in acc.Scalars(tag):
        print(tag, s.step, repr(s.value), repr(s.wall_time))
)";
    QProcess python;
    python.start("/usr/bin/python3", {"-c", script, path});
    QVERIFY(python.waitForFinished(120000));
    QVERIFY2(python.exitCode() == 0, python.readAllStandardError().constData());
    const QString out = QString::fromUtf8(python.readAllStandardOutput()).trimmed();
    QCOMPARE(out, QString("train/loss 1 2.5 1000.25\n"
                          "train/loss 2 1.25 1000.5\n"
                          "val/acc 2 0.75 1000.75"));
  }
};

QTEST_APPLESS_MAIN(TstTensorboard)
#include "tst_tensorboard.moc"
