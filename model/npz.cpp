#include "npz.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

#include "zip_archive.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npz.cpp assumes little-endian");
#endif

namespace vit {

namespace {

struct NpyType {
  const char* code;  // numpy's type code without the byte-order character
  c10::ScalarType type;
  uint64_t size;
};
constexpr NpyType kTypes[] = {
    {"f8", c10::ScalarType::Double, 8}, {"f4", c10::ScalarType::Float, 4},
    {"f2", c10::ScalarType::Half, 2},   {"i8", c10::ScalarType::Long, 8},
    {"i4", c10::ScalarType::Int, 4},    {"i2", c10::ScalarType::Short, 2},
    {"i1", c10::ScalarType::Char, 1},   {"u1", c10::ScalarType::Byte, 1},
    {"b1", c10::ScalarType::Bool, 1},
};

std::string supported_types() {
  std::string out;
  for (const auto& t : kTypes)
    out += (out.empty() ? "" : ", ") + std::string(t.size == 1 ? "|" : "<") + t.code;
  return out;
}

std::runtime_error error(const std::string& what, const std::string& problem) {
  return std::runtime_error(what + ": " + problem);
}

struct NpyHeader {
  const NpyType* type = nullptr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  uint64_t nbytes = 0;
};

// A parser for the one Python literal an .npy header is: a dict of three known keys whose values
// are a string, a bool and a tuple of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  NpyHeader parse() {
    NpyHeader h;
    bool has_descr = false, has_fortran = false, has_shape = false;
    std::string descr;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[')
          throw error(what_, "is a structured array (descr is a list); weights are plain arrays");
        descr = string_literal();
        has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        has_fortran = true;
      } else if (key == "shape") {
        h.shape = shape();
        has_shape = true;
      } else {
        throw error(what_, "its .npy header has the unknown key '" + key +
                               "'; expected descr, fortran_order and shape");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("',' or '}'");
    }
    ++pos_;
    skip_space();
    if (pos_ != s_.size()) fail("the end of the header");
    if (!has_descr || !has_fortran || !has_shape)
      throw error(what_, "its .npy header lacks descr, fortran_order or shape");
    h.type = npy_type(descr);
    // The element count, and LibTorch's strides (products of trailing dims, zeros counted as 1),
    // must fit: (0, 2^62, 4) has no elements but its first stride overflows.
    uint64_t extent = 1;
    for (int64_t d : h.shape) {
      if (__builtin_mul_overflow(h.numel, uint64_t(d), &h.numel) ||
          __builtin_mul_overflow(extent, uint64_t(std::max<int64_t>(d, 1)), &extent) ||
          extent > uint64_t(std::numeric_limits<int64_t>::max()))
        throw error(what_, "its shape overflows 64-bit sizes");
    }
    if (__builtin_mul_overflow(h.numel, h.type->size, &h.nbytes) ||
        h.nbytes > uint64_t(std::numeric_limits<int64_t>::max()))
      throw error(what_, "its shape overflows 64-bit sizes");
    return h;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  [[noreturn]] void fail(const std::string& expected) const {
    throw error(what_, "its .npy header is not a valid dict literal: expected " + expected +
                           " at character " + std::to_string(pos_));
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("'") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("a quoted string");
    const size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string::npos) fail("a closing quote");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    if (out.find('\\') != std::string::npos) fail("a string without escapes");
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("True or False");
  }
  std::vector<int64_t> shape() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("a non-negative integer");
      uint64_t value = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (__builtin_mul_overflow(value, uint64_t{10}, &value) ||
            __builtin_add_overflow(value, uint64_t(peek() - '0'), &value) ||
            value > uint64_t(std::numeric_limits<int64_t>::max()))
          throw error(what_, "a dimension of its shape is above 2^63");
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 long
      dims.push_back(int64_t(value));
      if (dims.size() > 64) throw error(what_, "its shape has more than 64 dimensions");
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("',' or ')'");
    }
    ++pos_;
    return dims;
  }
  const NpyType* npy_type(const std::string& descr) const {
    if (descr.size() >= 2) {
      const char order = descr[0];
      const std::string code = descr.substr(1);
      for (const auto& t : kTypes) {
        if (code != t.code) continue;
        if (order == '<' || (order == '|' && t.size == 1) || (order == '=' && t.size == 1))
          return &t;
        if (order == '>')
          throw error(what_, "is big-endian ('" + descr + "'); re-save it little-endian, "
                             "e.g. arr.astype('<" + code + "') in numpy");
      }
      if (code == "O")
        throw error(what_, "is an object array ('" + descr + "'), which needs pickle to read; "
                           "pickle from a file is never run. Save plain numeric arrays");
    }
    throw error(what_, "has the dtype '" + descr + "', which is not supported; supported: " +
                           supported_types());
  }

  const std::string& s_;
  const std::string& what_;
  size_t pos_ = 0;
};

// Reads one array through `read(out, n)`, which must deliver exactly n bytes or throw;
// `remaining` is how many bytes follow the header.
at::Tensor read_npy(const std::function<void(void*, uint64_t)>& read,
                    const std::function<uint64_t()>& remaining, const std::string& what) {
  char prefix[10];
  if (remaining() < 10) throw error(what, "is too short to be an .npy array");
  read(prefix, 8);
  if (std::memcmp(prefix, "\x93NUMPY", 6) != 0)
    throw error(what, "is not an .npy array (it does not start with \\x93NUMPY)");
  const int major = static_cast<unsigned char>(prefix[6]);
  uint64_t header_len = 0;
  if (major == 1) {
    read(prefix + 8, 2);
    header_len = uint64_t(static_cast<unsigned char>(prefix[8])) |
                 uint64_t(static_cast<unsigned char>(prefix[9])) << 8;
  } else if (major == 2 || major == 3) {
    unsigned char len[4];
    if (remaining() < 4) throw error(what, "ends inside its .npy header length");
    read(len, 4);
    header_len = uint64_t(len[0]) | uint64_t(len[1]) << 8 | uint64_t(len[2]) << 16 |
                 uint64_t(len[3]) << 24;
  } else {
    throw error(what, "has .npy format version " + std::to_string(major) +
                          "; versions 1, 2 and 3 are read");
  }
  if (header_len > kMaxNpyHeader)
    throw error(what, "has a " + std::to_string(header_len) + "-byte .npy header, above the " +
                          std::to_string(kMaxNpyHeader) + "-byte limit numpy itself applies");
  if (header_len > remaining())
    throw error(what, "its .npy header length " + std::to_string(header_len) +
                          " runs past the end of the array");
  std::string header(header_len, '\0');
  read(header.data(), header_len);
  const NpyHeader h = HeaderParser(header, what).parse();
  if (h.nbytes != remaining()) {
    std::string shape = "(";
    for (size_t i = 0; i < h.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(h.shape[i]);
    shape += h.shape.size() == 1 ? ",)" : ")";
    throw error(what, "has " + std::to_string(remaining()) + " data bytes but shape " + shape +
                          " of " + std::string(h.type->code) + " needs " +
                          std::to_string(h.nbytes) + (h.nbytes > remaining() ? " (truncated)" : ""));
  }
  // Fortran order: the bytes are the C-order array of the reversed shape, transposed.
  std::vector<int64_t> storage_shape = h.shape;
  if (h.fortran_order) std::reverse(storage_shape.begin(), storage_shape.end());
  at::Tensor t = at::empty(storage_shape, at::TensorOptions().dtype(h.type->type));
  if (h.nbytes > 0) read(t.data_ptr(), h.nbytes);
  if (h.type->type == c10::ScalarType::Bool) {
    const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
    for (uint64_t i = 0; i < h.nbytes; ++i)
      if (bytes[i] > 1)
        throw error(what, "is a bool array holding the byte " + std::to_string(bytes[i]) +
                              " at element " + std::to_string(i) + "; a bool must be 0 or 1");
  }
  if (h.fortran_order && t.dim() > 1) {
    std::vector<int64_t> reverse(size_t(t.dim()));
    for (int64_t i = 0; i < t.dim(); ++i) reverse[size_t(i)] = t.dim() - 1 - i;
    t = t.permute(reverse).contiguous();
  }
  return t;
}

std::string npy_header(const at::Tensor& t, const std::string& code) {
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
  shape += t.dim() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + code + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // numpy pads with spaces so that the data starts at a multiple of 64 bytes, then a newline.
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  return header;
}

}  // namespace

at::Tensor parse_npy(const std::string& bytes, const std::string& name_for_errors) {
  uint64_t pos = 0;
  auto read = [&](void* out, uint64_t n) {
    if (n > bytes.size() - pos) throw error(name_for_errors, "is truncated");
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
  };
  return read_npy(read, [&] { return uint64_t(bytes.size() - pos); }, name_for_errors);
}

NamedTensors load_npz(const std::string& path) {
  ZipReader zip(path);
  NamedTensors out;
  for (const auto& entry : zip.entries()) {
    const std::string what = path + ", array '" + entry.name + "'";
    const std::string suffix = ".npy";
    if (entry.name.size() <= suffix.size() ||
        entry.name.compare(entry.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      throw error(path, "holds '" + entry.name + "', which is not an .npy array; an .npz file "
                        "holds only .npy arrays");
    ZipStream stream = zip.open(entry);
    at::Tensor t = read_npy([&](void* p, uint64_t n) { stream.read_exact(p, n); },
                            [&] { return stream.remaining(); }, what);
    stream.expect_end();
    out.emplace_back(entry.name.substr(0, entry.name.size() - suffix.size()), std::move(t));
  }
  return out;
}

std::string serialize_npy(const at::Tensor& tensor) {
  const NpyType* type = nullptr;
  for (const auto& t : kTypes)
    if (t.type == tensor.scalar_type()) type = &t;
  if (!type)
    throw std::invalid_argument(std::string("numpy has no dtype for ") +
                                c10::toString(tensor.scalar_type()) + " tensors");
  const std::string code = std::string(type->size == 1 ? "|" : "<") + type->code;
  const std::string header = npy_header(tensor, code);
  const at::Tensor c = tensor.contiguous();
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  return out;
}

void save_npz(const std::string& path, const NamedTensors& tensors, bool compressed) {
  std::vector<std::pair<std::string, std::string>> entries;
  entries.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) entries.emplace_back(name + ".npy", serialize_npy(tensor));
  write_zip(path, entries, compressed);
}

}  // namespace vit
