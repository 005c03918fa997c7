// safetensors: round trips of every dtype, byte-exact layouts computed by hand (the interop
// guarantee: the reference reader parses exactly this layout), every malformed or hostile file
// rejected with a message naming the problem, and atomic saves that never damage an existing file.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "safetensors.h"

#include "support/rows.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;
using vit_test::contains;

namespace {

// The 8-byte little-endian length field, byte by byte.
std::string le64(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out;
}

// A file from its parts: the length field (the header's size unless overridden), header, data.
std::string file_bytes(const std::string& header, const std::string& data = "",
                       std::optional<uint64_t> length = std::nullopt) {
  return le64(length.value_or(header.size())) + header + data;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

int64_t element_size(const torch::Tensor& t) { return static_cast<int64_t>(t.element_size()); }

// Tensors equal in name, dtype, shape and every bit (NaN-safe: compares bytes).
bool same_tensor(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.contiguous(), cb = b.contiguous();
  // An empty tensor's data_ptr() is null, which memcmp may not be given even for 0 bytes.
  return ca.nbytes() == cb.nbytes() &&
         (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

// The regular files of a directory, hidden ones included, sorted (QDir::Files | QDir::Hidden).
std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

enum class Failure { UnwritableDirectory, WriteFailsMidway, InvalidTensors };

// The suite's directory (the Qt suite's QTemporaryDir member).
const vit_test::TempDir& suite_dir() {
  static const vit_test::TempDir dir;
  return dir;
}

// Once, before every test (the Qt suite's initTestCase).
class SuiteSetup : public testing::Environment {
  void SetUp() override {
    torch::manual_seed(0);
    ASSERT_TRUE(suite_dir().valid()) << suite_dir().error();
  }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

TEST(Safetensors, roundTripKeepsEveryDtypeShapeAndMetadata) {
  auto opts = [](torch::Dtype d) { return torch::TensorOptions().dtype(d); };
  const auto wide = torch::randn({4, 3}, opts(torch::kFloat32));
  vit::NamedTensors in = {
      {"f64", torch::randn({2, 3}, opts(torch::kFloat64))},
      {"f32.transposed", wide.t()},  // non-contiguous view: written in its logical C order
      {"f32.strided", wide.slice(/*dim=*/0, 0, 4, /*step=*/2)},
      {"f16", torch::randn({5}, opts(torch::kFloat16))},
      {"bf16", torch::randn({2, 2, 2}, opts(torch::kBFloat16))},
      {"i64.scalar", torch::tensor(int64_t{-1234567890123})},  // 0-dim
      {"i32", torch::tensor({INT32_MIN, 0, INT32_MAX}, opts(torch::kInt32))},
      {"i16", torch::tensor({-32768, 7, 32767}, opts(torch::kInt16))},
      {"i8", torch::tensor({-128, -1, 127}, opts(torch::kInt8))},
      {"u8", torch::tensor({0, 128, 255}, opts(torch::kUInt8))},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 3}, opts(torch::kFloat32))},
      {"blocks.0.attn.qkv.weight", torch::full({1}, std::nan(""), opts(torch::kFloat32))},
  };
  ASSERT_FALSE(in[1].second.is_contiguous());
  ASSERT_FALSE(in[2].second.is_contiguous());
  const std::map<std::string, std::string> meta = {
      // Not a raw string: Qt 6.4's moc misreads \" inside one and then finds no test class.
      {"format", "pt"}, {"vit_config", "{\"dim\": 64, \"name\": \"ViT \\\"tiny\\\"\"}"},
      {"unicode", "Größe ✓"}, {"empty", ""}};

  const std::string path = suite_dir().file("roundtrip.safetensors");
  vit::save_safetensors(path, in, meta);
  const auto loaded = vit::load_safetensors(path);

  ASSERT_EQ(loaded.metadata, meta);
  ASSERT_EQ(loaded.tensors.size(), in.size());
  for (const auto& [name, tensor] : in) {
    const torch::Tensor* got = loaded.find(name);
    ASSERT_TRUE(got) << name;
    ASSERT_TRUE(same_tensor(*got, tensor)) << name;
    ASSERT_TRUE(got->is_contiguous());
  }
  ASSERT_EQ(loaded.find("i64.scalar")->dim(), int64_t{0});
  ASSERT_EQ(loaded.find("empty")->sizes().vec(), (std::vector<int64_t>{0, 3}));
  ASSERT_TRUE(loaded.find("absent") == nullptr);

  // File order: larger elements first, the caller's order within one element size.
  std::vector<std::pair<int64_t, std::string>> expected;
  for (const auto& [name, tensor] : in) expected.emplace_back(element_size(tensor), name);
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_EQ(loaded.tensors[i].first, expected[i].second);

  // The in-memory writer and reader agree with the file ones.
  const std::string bytes = vit::serialize_safetensors(in, meta);
  ASSERT_EQ(read_file(path), bytes);
  const auto parsed = vit::parse_safetensors(bytes, "memory");
  ASSERT_EQ(parsed.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(parsed.tensors[i].first, loaded.tensors[i].first);
    ASSERT_TRUE(same_tensor(parsed.tensors[i].second, loaded.tensors[i].second));
  }
}

TEST(Safetensors, singleDtypeKeepsCallerOrder) {
  // A ViT checkpoint is all F32: its parameters must come back in named_parameters() order.
  vit::NamedTensors in;
  for (const char* name : {"pos_embed", "cls_token", "head.weight", "blocks.0.norm1.bias", "a"})
    in.emplace_back(name, torch::randn({3}));
  const auto out = vit::parse_safetensors(vit::serialize_safetensors(in), "memory");
  ASSERT_EQ(out.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out.tensors[i].first, in[i].first);
  ASSERT_TRUE(out.metadata.empty());
}

TEST(Safetensors, loadedTensorsOwnTheirMemory) {
  std::string bytes = vit::serialize_safetensors({{"w", torch::arange(6, torch::kFloat32)}});
  const auto file = vit::parse_safetensors(bytes, "memory");
  std::fill(bytes.begin(), bytes.end(), '\xff');  // scribble over the buffer it came from
  ASSERT_TRUE(torch::equal(*file.find("w"), torch::arange(6, torch::kFloat32)));
  ASSERT_FALSE(file.find("w")->requires_grad());
}

TEST(Safetensors, everyTensorIsAlignedToItsElementSize) {
  // Odd-sized U8 and BOOL tensors listed before wider ones would misalign those in a naive
  // writer; PyTorch refuses to view misaligned bytes as F32/F64 without a copy.
  vit::NamedTensors in = {
      {"u8", torch::ones({3}, torch::kUInt8)},     {"f64", torch::ones({1}, torch::kFloat64)},
      {"bool", torch::ones({1}, torch::kBool)},    {"f16", torch::ones({3}, torch::kFloat16)},
      {"i32", torch::ones({1}, torch::kInt32)},    {"i64", torch::ones({2}, torch::kInt64)},
      {"bf16", torch::ones({1}, torch::kBFloat16)}};
  const std::string bytes = vit::serialize_safetensors(in, {{"k", "odd length"}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_EQ(n % 8, uint64_t{0});
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  const std::map<std::string, uint64_t> sizes = {{"F64", 8}, {"I64", 8}, {"I32", 4},
                                                 {"F16", 2}, {"BF16", 2}, {"U8", 1},
                                                 {"BOOL", 1}};
  int checked = 0;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const uint64_t absolute = 8 + n + info["data_offsets"][0].get<uint64_t>();
    ASSERT_TRUE(absolute % sizes.at(info["dtype"].get<std::string>()) == 0) << name;
    ++checked;
  }
  ASSERT_EQ(checked, 7);
}

// The layouts below are written out by hand from the format description: u64 LE header length,
// compact JSON with "__metadata__" first and fields dtype, shape, data_offsets, spaces up to a
// multiple of 8, then the raw little-endian data. The first two are the layouts the reference
// Rust crate's own serialization tests expect, so a Python reader accepts these bytes.
TEST(Safetensors, byteExactSingleTensor) {
  const auto t = torch::arange(6, torch::kFloat32).view({1, 1, 2, 3});
  const std::string json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(json.size(), size_t{65});  // + 7 spaces = 72 = 0x48
  const std::string expected = std::string("\x48\0\0\0\0\0\0\0", 8) + json + "       " +
                               std::string("\0\0\0\0"           // 0.0f
                                           "\0\0\x80\x3f"       // 1.0f = 0x3f800000
                                           "\0\0\0\x40"         // 2.0f = 0x40000000
                                           "\0\0\x40\x40"       // 3.0f = 0x40400000
                                           "\0\0\x80\x40"       // 4.0f = 0x40800000
                                           "\0\0\xa0\x40",      // 5.0f = 0x40a00000
                                           24);
  ASSERT_EQ(vit::serialize_safetensors({{"attn0", t}}), expected);

  const std::string path = suite_dir().file("attn0.safetensors");
  vit::save_safetensors(path, {{"attn0", t}});
  ASSERT_EQ(read_file(path), expected);
  // And the bytes written by hand load back.
  write_file(path, expected);
  ASSERT_TRUE(torch::equal(*vit::load_safetensors(path).find("attn0"), t));
}

TEST(Safetensors, byteExactEmptyAndMetadataOnly) {
  ASSERT_EQ(vit::serialize_safetensors({}), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  const std::string json = R"({"__metadata__":{"framework":"pt"}})";  // 35 + 5 spaces = 40
  const std::string expected = std::string("\x28\0\0\0\0\0\0\0", 8) + json + "     ";
  ASSERT_EQ(vit::serialize_safetensors({}, {{"framework", "pt"}}), expected);
  const auto back = vit::parse_safetensors(expected, "memory");
  ASSERT_TRUE(back.tensors.empty());
  ASSERT_EQ(back.metadata.at("framework"), std::string("pt"));
}

TEST(Safetensors, byteExactMixedDtypesWithMetadata) {
  // Given U8 first, I16 second: the I16 is written first so that it stays 2-byte aligned.
  vit::NamedTensors in = {{"b", torch::tensor({1, 2, 3}, torch::kUInt8)},
                          {"a", torch::tensor({-1, 258}, torch::kInt16)}};
  const std::string json =
      R"({"__metadata__":{"k":"v"},)"
      R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}})";
  ASSERT_EQ(json.size(), size_t{131});  // + 5 spaces = 136 = 0x88
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + json + "     " +
                               "\xff\xff"      // -1 as int16
                               "\x02\x01"      // 258 = 0x0102
                               "\x01\x02\x03";  // b
  ASSERT_EQ(vit::serialize_safetensors(in, {{"k", "v"}}), expected);
  ASSERT_EQ(expected.size(), size_t{8 + 136 + 7});
}

struct VariantRow : vit_test::Row {
  std::string bytes;
  std::vector<std::string> names;  // in file-offset order
};

class AcceptsValidVariants : public testing::TestWithParam<VariantRow> {};

TEST_P(AcceptsValidVariants, row) {
  const std::string& bytes = GetParam().bytes;
  const std::vector<std::string>& names = GetParam().names;
  const auto file = vit::parse_safetensors(bytes, "variant");
  std::vector<std::string> got;
  for (const auto& [name, tensor] : file.tensors) got.push_back(name);
  ASSERT_EQ(got, names);
  ASSERT_TRUE(file.metadata.empty());
}

std::vector<VariantRow> variant_rows() {
  std::vector<VariantRow> rows;
  auto row = [&](const char* name, const std::string& bytes, std::vector<std::string> names) {
    rows.push_back({{name}, bytes, std::move(names)});
  };
  const std::string f32 = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  const std::string one(4, '\0');
  row("header not padded to 8", file_bytes("{\"w\":" + f32 + "}", one), {"w"});
  row("trailing spaces", file_bytes("{\"w\":" + f32 + "}        ", one), {"w"});
  row("null __metadata__",
      file_bytes("{\"__metadata__\":null,\"w\":" + f32 + "}", one), {"w"});
  row("extra entry fields",
      file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[1]}})", one),
      {"w"});
  row("empty tensor between others",
      file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                 R"("e":{"dtype":"F64","shape":[2,0],"data_offsets":[1,1]},)"
                 R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                 "xy"),
      {"a", "e", "b"});
  row("header order differs from data order",
      file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                 R"("b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                 "xy"),
      {"b", "a"});
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Safetensors, AcceptsValidVariants, testing::ValuesIn(variant_rows()),
                         vit_test::RowName());

struct MalformedRow : vit_test::Row {
  std::string bytes;
  std::string problem;  // must appear in the message, after the file's name
};

std::vector<MalformedRow> malformed_rows() {
  std::vector<MalformedRow> rows;
  auto row = [&](const char* name, const std::string& bytes, const std::string& problem) {
    rows.push_back({{name}, bytes, problem});
  };
  auto entry = [](const std::string& name, const std::string& body) {
    return "{\"" + name + "\":" + body + "}";
  };
  const std::string f32x1 = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  const std::string four(4, '\0'), eight(8, '\0');

  row("empty file", std::string(), "too short");
  row("5 bytes", std::string("\x01\x02\x03\x04\x05", 5), "(5 bytes");
  row("length past end of file",
      file_bytes("{}", "", 64), "header length 64 runs past the end of the file");
  row("length just below limit, tiny file",
      file_bytes("{}", "", 99'999'999), "runs past the end of the file");
  row("header above 100 MB",
      file_bytes("", "", 100'000'001), "above the 100000000-byte limit");
  row("length 2^64-1", file_bytes("", "", UINT64_MAX),
      "header length 18446744073709551615 is above");
  row("zip (a .pth file)",
      std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10), "100000000-byte limit");
  row("zero header length", file_bytes("", eight), "header is empty");
  row("JSON array header",
      file_bytes("[1,2]"), "must be a JSON object, starting with '{' (current reference "
                           "readers require it), but it starts with '['");
  row("leading space", file_bytes(" {}"), "but it starts with byte 32");
  row("truncated JSON", file_bytes(R"({"w":{"dtype":)"), "not valid JSON");
  row("JSON then garbage", file_bytes("{}x"), "not valid JSON");
  row("invalid UTF-8 name",
      file_bytes("{\"\xff\xfe\":" + f32x1 + "}", four), "UTF-8");
  row("entry not an object",
      file_bytes(entry("w", "[1]")),
      "tensor 'w': its entry must be an object with dtype, shape and data_offsets");
  row("missing dtype",
      file_bytes(entry("w", R"({"shape":[1],"data_offsets":[0,4]})"), four),
      "tensor 'w' has no \"dtype\"");
  row("missing shape",
      file_bytes(entry("w", R"({"dtype":"F32","data_offsets":[0,4]})"), four),
      "tensor 'w' has no \"shape\"");
  row("missing data_offsets",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1]})"), four),
      "tensor 'w' has no \"data_offsets\"");
  row("dtype not a string",
      file_bytes(entry("w", R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})"), four),
      "\"dtype\" must be a string, got 4");
  row("shape not an array",
      file_bytes(entry("w", R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})"), four),
      "\"shape\" must be an array of non-negative integers");
  row("fractional dimension",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), four),
      "\"shape\" must be an array of non-negative integers, got [1.5]");
  row("data_offsets with one number",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[4]})"), four),
      "\"data_offsets\" must be [begin, end]");
  row("negative data_offsets",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), four),
      "\"data_offsets\" must be [begin, end] with non-negative integers");
  row("unknown dtype",
      file_bytes(entry("w", R"({"dtype":"F128","shape":[1],"data_offsets":[0,4]})"), four),
      "unknown dtype \"F128\"; supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
  row("dtype LibTorch lacks",
      file_bytes(entry("w", R"({"dtype":"U16","shape":[2],"data_offsets":[0,4]})"), four),
      "dtype U16, which LibTorch 1.13 has no type for; supported: F64");
  row("negative dimension",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[2,-3],"data_offsets":[0,4]})"), four),
      "tensor 'w' has negative dimension -3");
  row("shape product overflows",
      file_bytes(entry("w", R"({"dtype":"U8","shape":[4294967296,4294967297],)"
                            R"("data_offsets":[0,4]})"),
                 four),
      "overflows 64-bit sizes");
  row("byte count overflows",
      file_bytes(entry("w", R"({"dtype":"F64","shape":[4611686018427387904],)"
                            R"("data_offsets":[0,4]})"),
                 four),
      "overflows 64-bit sizes");
  row("strides overflow behind a zero dim",
      file_bytes(entry("w", R"({"dtype":"U8","shape":[0,4611686018427387904,4],)"
                            R"("data_offsets":[0,0]})")),
      "overflows 64-bit sizes");
  {
    std::string ones = "1";
    for (int k = 1; k < 65; ++k) ones += ",1";
    row("65 dimensions",
        file_bytes(entry("w", R"({"dtype":"U8","shape":[)" + ones + R"(],"data_offsets":[0,1]})"),
                   std::string(1, '\0')),
        "has 65 dimensions; at most 64");
  }
  row("dimension above int64",
      file_bytes(entry("w", R"({"dtype":"U8","shape":[18446744073709551615],)"
                            R"("data_offsets":[0,4]})"),
                 four),
      "dimension 18446744073709551615");
  row("end before begin",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), eight),
      "data_offsets [8,4]: the end is before the begin");
  row("huge tensor past the data (no allocation)",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[100000000000],)"
                            R"("data_offsets":[0,400000000000]})"),
                 std::string(16, '\0')),
      "past the end of the 16-byte data buffer");
  row("byte count != numel x element size",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})"),
                 std::string(12, '\0')),
      "has 12 bytes in data_offsets [0,12] but F32 shape [2, 2] needs 16");
  row("overlapping tensors",
      file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 std::string(12, '\0')),
      "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
  row("same range twice",
      file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                 four),
      "overlap");
  row("gap between tensors",
      file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                 std::string(12, '\0')),
      "bytes [4, 8) of the data buffer belong to no tensor (a gap before 'b')");
  row("gap at the start",
      file_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), eight),
      "bytes [0, 4) of the data buffer belong to no tensor");
  row("trailing bytes",
      file_bytes(entry("w", f32x1), eight),
      "the last 4 bytes of the 8-byte data buffer belong to no tensor (trailing bytes)");
  row("data but no tensors", file_bytes("{}", four), "trailing bytes");
  row("__metadata__ value not a string",
      file_bytes(R"({"__metadata__":{"epochs":3}})"),
      "__metadata__ value for 'epochs' must be a string, got 3");
  row("__metadata__ not an object",
      file_bytes(R"({"__metadata__":["a"]})"), "__metadata__ must be a JSON object");
  row("duplicate tensor name",
      file_bytes("{\"w\":" + f32x1 + R"(,"w":{"dtype":"F32","shape":[1],)"
                                     R"("data_offsets":[4,8]}})",
                 eight),
      "has the key 'w' twice; tensor names must be unique");
  row("deep nesting",
      file_bytes(R"({"w":{"dtype":"F32","shape":[[[[[[1]]]]]],"data_offsets":[0,4]}})", four),
      "nests JSON deeper");
  row("BOOL byte other than 0/1",
      file_bytes(entry("w", R"({"dtype":"BOOL","shape":[3],"data_offsets":[0,3]})"),
                 std::string("\x01\x00\x02", 3)),
      "BOOL tensor 'w' holds the byte 2 at element 2; a bool must be 0 or 1");
  return rows;
}

class RejectsMalformedFiles : public testing::TestWithParam<MalformedRow> {};

TEST_P(RejectsMalformedFiles, row) {
  static int bad = 0;
  const std::string& bytes = GetParam().bytes;
  const std::string& problem = GetParam().problem;
  const std::string path = suite_dir().file("bad-" + std::to_string(bad++) + ".safetensors");
  write_file(path, bytes);

  auto expect_rejection = [&](const std::function<void()>& load, const std::string& name) {
    try {
      load();
      FAIL() << "accepted";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      ASSERT_TRUE(vit_test::starts_with(message, name + ": ")) << message;
      ASSERT_TRUE(contains(message, problem)) << message;
    } catch (const std::exception& e) {
      FAIL() << "not a std::runtime_error: " << e.what();
    }
  };
  // The streaming file reader and the in-memory reader must agree on every case.
  expect_rejection([&] { vit::load_safetensors(path); }, path);
  expect_rejection([&] { vit::parse_safetensors(bytes, "in-memory"); }, "in-memory");
}

INSTANTIATE_TEST_SUITE_P(Safetensors, RejectsMalformedFiles, testing::ValuesIn(malformed_rows()),
                         vit_test::RowName());

TEST(Safetensors, missingFileAndDirectoryAreNamed) {
  const std::string missing = suite_dir().file("nope.safetensors");
  try {
    vit::load_safetensors(missing);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), missing + ": cannot open: No such file")) << e.what();
  }
  try {
    vit::load_safetensors(suite_dir().path());
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), "is a directory")) << e.what();
  }
}

struct InvalidTensorRow : vit_test::Row {
  std::string tensor_name;
  int which;  // 0 valid tensor, 1 undefined, 2 complex, 3 sparse
  std::string problem;
};

class SaveRejectsInvalidTensors : public testing::TestWithParam<InvalidTensorRow> {};

TEST_P(SaveRejectsInvalidTensors, row) {
  const std::string& name = GetParam().tensor_name;
  const int which = GetParam().which;
  const std::string& problem = GetParam().problem;
  std::string n = name;
  if (GetParam().name == "invalid UTF-8 name") n = "\xc3\x28";
  const torch::Tensor tensors[] = {torch::ones({2}), torch::Tensor(),
                                   torch::ones({2}, torch::kComplexFloat),
                                   torch::eye(2).to_sparse()};
  vit::NamedTensors in = {{n, tensors[which]}};
  if (n == "dup") in.push_back({"dup", torch::ones({1})});
  try {
    vit::serialize_safetensors(in);
    FAIL() << "accepted";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(contains(e.what(), problem)) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Safetensors, SaveRejectsInvalidTensors,
                         testing::ValuesIn(std::vector<InvalidTensorRow>{
    {{"empty name"}, "", 0, "a tensor name is empty"},
    {{"__metadata__"}, "__metadata__", 0, "reserved"},
    {{"duplicate"}, "dup", 0, "'dup' appears twice"},
    {{"undefined tensor"}, "u", 1, "tensor 'u' is undefined"},
    {{"complex dtype"}, "c", 2, "has dtype ComplexFloat, which cannot be saved"},
    {{"sparse tensor"}, "s", 3, "is sparse"},
    {{"invalid UTF-8 name"}, "", 0, "not valid UTF-8"},
}), vit_test::RowName());

TEST(Safetensors, saveReplacesAnExistingFile) {
  const std::string path = suite_dir().file("replace.safetensors");
  vit::save_safetensors(path, {{"old", torch::zeros({2})}});
  vit::save_safetensors(path, {{"new", torch::ones({3})}}, {{"v", "2"}});
  const auto file = vit::load_safetensors(path);
  ASSERT_TRUE(file.find("old") == nullptr);
  ASSERT_TRUE(torch::equal(*file.find("new"), torch::ones({3})));
  ASSERT_EQ(file.metadata.at("v"), std::string("2"));
}

TEST(Safetensors, saveIntoMissingDirectoryThrows) {
  const std::string missing = suite_dir().file("no_such_dir");
  const std::string path = missing + "/w.safetensors";
  try {
    vit::save_safetensors(path, {{"w", torch::ones({2})}});
    FAIL() << "saved into a missing directory";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), "no_such_dir")) << e.what();
  }
  ASSERT_FALSE(fs::exists(missing));
}

struct FailureRow : vit_test::Row {
  Failure failure;
};

class FailedSaveKeepsTheExistingFile : public testing::TestWithParam<FailureRow> {};

TEST_P(FailedSaveKeepsTheExistingFile, row) {
  const Failure failure = GetParam().failure;
  const std::string sub = suite_dir().file("keep-" + std::to_string(int(failure)));
  std::error_code ec;
  fs::create_directories(sub, ec);
  ASSERT_TRUE(!ec && fs::is_directory(sub)) << sub << ": " << ec.message();  // QDir::mkpath
  const std::string path = sub + "/model.safetensors";
  vit::save_safetensors(path, {{"w", torch::arange(4, torch::kFloat32)}},
                        {{"epoch", "1"}});
  const std::string before = read_file(path);
  ASSERT_FALSE(before.empty());

  // 2 MB of new weights, far above the 64 KiB file size limit below.
  vit::NamedTensors next = {{"w", torch::randn({512, 1024})}};
  bool threw = false;
  std::string message;
  auto save = [&] {
    try {
      vit::save_safetensors(path, next, {{"epoch", "2"}});
    } catch (const std::exception& e) {
      threw = true;
      message = e.what();
    }
  };
  if (failure == Failure::UnwritableDirectory) {
    fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec, ec);  // mode 0500
    ASSERT_FALSE(ec) << ec.message();
    const bool still_writable = ::access(sub.c_str(), W_OK) == 0;
    if (!still_writable) save();
    fs::permissions(sub, fs::perms::owner_all, ec);  // 0700
    if (still_writable)
      GTEST_SKIP() << "running as root: directory permissions do not apply (the 'write fails "
                      "midway' row still covers a failed write)";
    ASSERT_TRUE(message.find("choose a writable directory") != std::string::npos) << message;
  } else if (failure == Failure::WriteFailsMidway) {
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    rlimit small = old;
    small.rlim_cur = 64 * 1024;
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of being killed
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    save();
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    ASSERT_TRUE(message.find("cannot write " + path) != std::string::npos) << message;
  } else {
    next.push_back({"w", torch::ones({1})});  // duplicate name
    save();
    ASSERT_TRUE(message.find("appears twice") != std::string::npos) << message;
  }
  ASSERT_TRUE(threw);
  ASSERT_EQ(read_file(path), before);  // byte for byte the old file
  ASSERT_EQ(vit::load_safetensors(path).metadata.at("epoch"), std::string("1"));
  // No temporary file is left behind.
  ASSERT_EQ(file_names(sub), std::vector<std::string>{"model.safetensors"});
}

INSTANTIATE_TEST_SUITE_P(Safetensors, FailedSaveKeepsTheExistingFile,
                         testing::ValuesIn(std::vector<FailureRow>{
    {{"unwritable directory"}, Failure::UnwritableDirectory},
    // A disk that fills up mid-write, simulated with a file size limit (works as root too).
    {{"write fails midway"}, Failure::WriteFailsMidway},
    {{"invalid tensors"}, Failure::InvalidTensors},
}), vit_test::RowName());
