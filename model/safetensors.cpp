// safetensors reading and writing. Writing follows the reference writer byte for byte (compact
// JSON, "__metadata__" first, header space-padded to 8 bytes, larger elements first). Reading
// checks the header completely (types, dtypes, shapes, offsets, exact coverage of the data) before
// it allocates a single tensor, so a truncated or hostile file costs at most its header.
#include "safetensors.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>

#include "atomic_file.h"

// safetensors stores every number little-endian; tensors are copied byte for byte, so the host must
// be little-endian too (x86_64 and aarch64 Linux are). A big-endian port would byte-swap here.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.cpp assumes little-endian");
#endif

namespace vit {

namespace {

using json = nlohmann::json;

struct Dtype {
  const char* name;
  c10::ScalarType type;
  uint64_t size;  // bytes per element
};

// The safetensors dtypes LibTorch 1.13 has a type for.
constexpr Dtype kDtypes[] = {
    {"F64", c10::ScalarType::Double, 8}, {"F32", c10::ScalarType::Float, 4},
    {"F16", c10::ScalarType::Half, 2},   {"BF16", c10::ScalarType::BFloat16, 2},
    {"I64", c10::ScalarType::Long, 8},   {"I32", c10::ScalarType::Int, 4},
    {"I16", c10::ScalarType::Short, 2},  {"I8", c10::ScalarType::Char, 1},
    {"U8", c10::ScalarType::Byte, 1},    {"BOOL", c10::ScalarType::Bool, 1},
};
// Valid safetensors dtypes with no LibTorch 1.13 type: named as such rather than as "unknown".
constexpr const char* kForeignDtypes[] = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                          "F6_E2M3", "F6_E3M2", "F4", "C64"};

std::string supported_dtypes() {
  std::string out;
  for (const auto& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

const Dtype* dtype_named(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const Dtype* dtype_of(c10::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

template <typename Int>
std::string list_string(const std::vector<Int>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

std::string quote_name(const std::string& name) { return "'" + name + "'"; }

// ---------------------------------------------------------------------------------------------
// Writing

// The header and the tensors in data order, ready to be written.
struct Prepared {
  std::string prefix;                // 8-byte length + padded header
  std::vector<at::Tensor> data;   // contiguous CPU tensors, in data_offsets order
  uint64_t data_bytes = 0;
};

Prepared prepare(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) throw std::invalid_argument("safetensors: a tensor name is empty");
    if (name == "__metadata__")
      throw std::invalid_argument(
          "safetensors: the tensor name \"__metadata__\" is reserved for the file's metadata");
    if (!seen.insert(name).second)
      throw std::invalid_argument("safetensors: the tensor name " + quote_name(name) +
                                  " appears twice; names must be unique");
    if (!tensor.defined())
      throw std::invalid_argument("safetensors: tensor " + quote_name(name) + " is undefined");
    if (tensor.layout() != c10::kStrided)
      throw std::invalid_argument("safetensors: tensor " + quote_name(name) +
                                  " is sparse; call to_dense() first");
    if (!dtype_of(tensor.scalar_type()))
      throw std::invalid_argument("safetensors: tensor " + quote_name(name) + " has dtype " +
                                  c10::toString(tensor.scalar_type()) +
                                  ", which cannot be saved; supported: " + supported_dtypes());
  }

  // Larger elements first, otherwise in the caller's order (the reference writer sorts the same
  // way): the data starts 8-byte aligned, so every tensor then starts at a multiple of its own
  // element size, and PyTorch can view the file's bytes as that dtype without a copy.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_of(tensors[a].second.scalar_type())->size >
           dtype_of(tensors[b].second.scalar_type())->size;
  });

  // ordered_json keeps insertion order: "__metadata__" first, then the tensors in data order,
  // each with dtype, shape, data_offsets, as the reference writer emits them.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  Prepared out;
  for (size_t i : order) {
    const auto& [name, tensor] = tensors[i];
    // detach: the bytes, not the autograd graph; resolve_*: lazy negation/conjugation views
    // would otherwise be written un-negated; contiguous: safetensors is C order.
    at::Tensor t = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous();
    const uint64_t begin = out.data_bytes;
    out.data_bytes += t.nbytes();
    header[name] = {{"dtype", dtype_of(t.scalar_type())->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", nlohmann::ordered_json::array({begin, out.data_bytes})}};
    out.data.push_back(std::move(t));
  }

  std::string text;
  try {
    // Compact, UTF-8 kept as is (ensure_ascii off), invalid UTF-8 refused rather than replaced.
    text = header.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    throw std::invalid_argument(
        std::string("safetensors: a tensor name or metadata string is not valid UTF-8: ") +
        e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  if (text.size() > kMaxSafetensorsHeader)
    throw std::invalid_argument("safetensors: the header would be " + std::to_string(text.size()) +
                                " bytes, above the 100000000-byte limit readers accept");

  const uint64_t n = text.size();
  out.prefix.reserve(8 + text.size());
  for (int i = 0; i < 8; ++i) out.prefix.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.prefix += text;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

[[noreturn]] void fail(const std::string& file, const std::string& problem) {
  throw std::runtime_error(file + ": " + problem);
}

uint64_t read_u64_le(const char* p) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(p[i]);
  return n;
}

// Checked before anything is allocated for the header: a garbage length (a .pth zip's "PK\3\4...",
// a truncated download) must cost nothing.
void check_header_length(uint64_t n, uint64_t file_size, const std::string& file) {
  if (n > kMaxSafetensorsHeader)
    fail(file, "header length " + std::to_string(n) +
                   " is above the 100000000-byte limit of safetensors headers (not a "
                   "safetensors file, or a corrupt one)");
  if (n > file_size - 8)
    fail(file, "header length " + std::to_string(n) + " runs past the end of the file (only " +
                   std::to_string(file_size - 8) +
                   " bytes follow the length field): the file is truncated or not a "
                   "safetensors file");
}

struct Entry {
  std::string name;
  const Dtype* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data_offsets
  std::map<std::string, std::string> metadata;
};

// Thrown from the JSON parser callback to stop parsing at once.
struct HeaderShapeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string describe_byte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x21 && byte < 0x7f) return std::string("'") + c + "'";
  return "byte " + std::to_string(byte);
}

json parse_json(const char* p, uint64_t n, const std::string& file) {
  if (n == 0) fail(file, "the header is empty (length 0); a safetensors header is a JSON object");
  if (p[0] != '{')
    fail(file, "the header must be a JSON object, starting with '{' (current reference "
               "readers require it), but it starts with " + describe_byte(p[0]) +
                   ": not a safetensors file");
  // A safetensors header nests at most 3 levels ({"name": {"shape": [1]}}): refusing deeper
  // nesting early keeps hostile headers cheap. Duplicate tensor names would silently keep only
  // the last entry, so they are refused too.
  std::set<std::string> names;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth > 2)
      throw HeaderShapeError("the header nests JSON deeper than a safetensors header can "
                             "(only {\"name\": {\"shape\": [...]}} is valid)");
    if (event == json::parse_event_t::key && depth == 1 &&
        !names.insert(parsed.get<std::string>()).second)
      throw HeaderShapeError("the header has the key " + quote_name(parsed.get<std::string>()) +
                             " twice; tensor names must be unique");
    return true;
  };
  try {
    return json::parse(p, p + n, callback);
  } catch (const HeaderShapeError& e) {
    fail(file, e.what());
  } catch (const json::exception& e) {
    fail(file, std::string("the header is not valid JSON: ") + e.what());
  }
}

std::vector<int64_t> parse_shape(const json& value, const std::string& file,
                                 const std::string& name) {
  const std::string wrong = "tensor " + quote_name(name) +
                            ": \"shape\" must be an array of non-negative integers, got ";
  if (!value.is_array()) fail(file, wrong + value.dump());
  if (value.size() > kMaxSafetensorsDims)
    fail(file, "tensor " + quote_name(name) + " has " + std::to_string(value.size()) +
                   " dimensions; at most " + std::to_string(kMaxSafetensorsDims) +
                   " are read (like .npy and .pth)");
  std::vector<int64_t> shape;
  shape.reserve(value.size());
  for (const auto& dim : value) {
    if (dim.is_number_integer() && !dim.is_number_unsigned() && dim.get<int64_t>() < 0)
      fail(file, "tensor " + quote_name(name) + " has negative dimension " + dim.dump() +
                     " in its shape " + value.dump());
    if (!dim.is_number_integer()) fail(file, wrong + value.dump());
    if (dim.is_number_unsigned() &&
        dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(file, "tensor " + quote_name(name) + ": dimension " + dim.dump() + " of shape " +
                     value.dump() + " overflows 64-bit sizes");
    shape.push_back(dim.get<int64_t>());
  }
  return shape;
}

Entry parse_entry(const std::string& name, const json& value, uint64_t data_size,
                  const std::string& file) {
  const std::string tensor = "tensor " + quote_name(name);
  if (!value.is_object())
    fail(file, tensor + ": its entry must be an object with dtype, shape and data_offsets, got " +
                   std::string(value.type_name()));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!value.contains(field)) fail(file, tensor + " has no \"" + field + "\"");

  Entry entry{name, nullptr, {}, 0, 0};
  const json& dtype = value["dtype"];
  if (!dtype.is_string())
    fail(file, tensor + ": \"dtype\" must be a string, got " + dtype.dump());
  const auto dtype_name = dtype.get<std::string>();
  entry.dtype = dtype_named(dtype_name);
  if (!entry.dtype) {
    const bool foreign = std::find(std::begin(kForeignDtypes), std::end(kForeignDtypes),
                                   dtype_name) != std::end(kForeignDtypes);
    fail(file, tensor + " has " +
                   (foreign ? "dtype " + dtype_name + ", which LibTorch 1.13 has no type for"
                            : "unknown dtype \"" + dtype_name + "\"") +
                   "; supported: " + supported_dtypes());
  }

  entry.shape = parse_shape(value["shape"], file, name);
  // Sizes, strides (products of trailing dims, zeros counted as 1) and the byte count must all
  // fit, or LibTorch's own arithmetic would overflow on a hostile shape like [0, 2^62, 4].
  uint64_t numel = 1, extent = 1, bytes = 0;
  bool overflow = false;
  for (int64_t d : entry.shape) {
    overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel);
    overflow |= __builtin_mul_overflow(extent, static_cast<uint64_t>(std::max<int64_t>(d, 1)),
                                       &extent);
  }
  overflow |= extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  overflow |= __builtin_mul_overflow(numel, entry.dtype->size, &bytes);
  if (overflow)
    fail(file, tensor + ": shape " + list_string(entry.shape) +
                   " overflows 64-bit sizes (its element count or byte count is too large)");

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    fail(file, tensor + ": \"data_offsets\" must be [begin, end] with non-negative integers, got " +
                   offsets.dump());
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  const std::string range = offsets.dump();
  if (entry.end < entry.begin)
    fail(file, tensor + " has data_offsets " + range + ": the end is before the begin");
  if (entry.end > data_size)
    fail(file, tensor + " has data_offsets " + range + " past the end of the " +
                   std::to_string(data_size) + "-byte data buffer (truncated file?)");
  if (entry.end - entry.begin != bytes)
    fail(file, tensor + " has " + std::to_string(entry.end - entry.begin) +
                   " bytes in data_offsets " + range + " but " + entry.dtype->name + " shape " +
                   list_string(entry.shape) + " needs " + std::to_string(bytes) + " (" +
                   std::to_string(numel) + " elements x " + std::to_string(entry.dtype->size) +
                   " bytes)");
  return entry;
}

// Validates the whole header against a data buffer of `data_size` bytes.
Header parse_header(const char* p, uint64_t n, uint64_t data_size, const std::string& file) {
  const json root = parse_json(p, n, file);
  Header header;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // the reference reader treats null as "no metadata"
      if (!value.is_object())
        fail(file, "__metadata__ must be a JSON object of strings, got " +
                       std::string(value.type_name()));
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          fail(file, "__metadata__ value for " + quote_name(mkey) + " must be a string, got " +
                         mvalue.dump());
        header.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    header.entries.push_back(parse_entry(key, value, data_size, file));
  }

  // The tensors must tile the data buffer exactly, as the reference reader demands: no overlap
  // (two tensors sharing bytes), no gap and no trailing bytes (hidden data nobody reads).
  std::sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const auto& e : header.entries) {
    if (e.begin < covered)
      fail(file, "tensors " + quote_name(previous->name) + " [" + std::to_string(previous->begin) +
                     ", " + std::to_string(previous->end) + "] and " + quote_name(e.name) + " [" +
                     std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     "] overlap in the data buffer");
    if (e.begin > covered)
      fail(file, "bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                     ") of the data buffer belong to no tensor (a gap before " +
                     quote_name(e.name) +
                     "); safetensors requires the tensors to cover the data exactly");
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    fail(file, "the last " + std::to_string(data_size - covered) + " bytes of the " +
                   std::to_string(data_size) +
                   "-byte data buffer belong to no tensor (trailing bytes); safetensors requires "
                   "the tensors to cover the data exactly");
  return header;
}

// Allocates each (validated) tensor and has `read(dst, offset, bytes)` fill it from the data
// buffer, so the tensors own their memory and nothing refers back to the file.
SafetensorsFile materialize(Header header, const std::string& file,
                            const std::function<void(char*, uint64_t, uint64_t)>& read) {
  SafetensorsFile out;
  out.metadata = std::move(header.metadata);
  out.tensors.reserve(header.entries.size());
  for (auto& e : header.entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin) read(static_cast<char*>(t.data_ptr()), e.begin, e.end - e.begin);
    if (e.dtype->type == c10::ScalarType::Bool) {
      // A C++ bool holding anything but 0 or 1 is undefined behaviour in LibTorch's kernels.
      const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
      for (uint64_t i = 0; i < e.end - e.begin; ++i)
        if (bytes[i] > 1)
          fail(file, "BOOL tensor " + quote_name(e.name) + " holds the byte " +
                         std::to_string(bytes[i]) + " at element " + std::to_string(i) +
                         "; a bool must be 0 or 1");
    }
    out.tensors.emplace_back(std::move(e.name), std::move(t));
  }
  return out;
}

}  // namespace

const at::Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [key, tensor] : tensors)
    if (key == name) return &tensor;
  return nullptr;
}

std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const Prepared prepared = prepare(tensors, metadata);
  std::string out;
  out.reserve(prepared.prefix.size() + prepared.data_bytes);
  out += prepared.prefix;
  for (const auto& t : prepared.data)
    out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Prepared before the file is touched, so a bad argument leaves any existing file as it was;
  // the tensors stream straight to disk instead of through a second in-memory copy.
  const Prepared prepared = prepare(tensors, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(prepared.prefix.data(), static_cast<std::streamsize>(prepared.prefix.size()));
    for (const auto& t : prepared.data)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  });
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name_for_errors) {
  const std::string& file = name_for_errors;
  if (bytes.size() < 8)
    fail(file, "too short for a safetensors file (" + std::to_string(bytes.size()) +
                   " bytes; it must start with an 8-byte header length)");
  const uint64_t n = read_u64_le(bytes.data());
  check_header_length(n, bytes.size(), file);
  const uint64_t data_start = 8 + n;
  Header header = parse_header(bytes.data() + 8, n, bytes.size() - data_start, file);
  return materialize(std::move(header), file, [&](char* dst, uint64_t offset, uint64_t count) {
    std::memcpy(dst, bytes.data() + data_start + offset, count);
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, not a safetensors file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  if (end < 0) fail(path, "cannot determine the file size");
  const uint64_t file_size = static_cast<uint64_t>(end);
  in.seekg(0);

  if (file_size < 8)
    fail(path, "too short for a safetensors file (" + std::to_string(file_size) +
                   " bytes; it must start with an 8-byte header length)");
  char length[8];
  in.read(length, 8);
  const uint64_t n = read_u64_le(length);
  check_header_length(n, file_size, path);  // before the header buffer is allocated
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (!in) fail(path, "read error in the header");

  // Only the header is held in memory; each tensor is read straight into its own storage.
  const uint64_t data_start = 8 + n;
  Header header = parse_header(text.data(), n, file_size - data_start, path);
  return materialize(std::move(header), path, [&](char* dst, uint64_t offset, uint64_t count) {
    in.seekg(static_cast<std::streamoff>(data_start + offset));
    in.read(dst, static_cast<std::streamsize>(count));
    if (!in)
      fail(path, "read error at byte " + std::to_string(data_start + offset) +
                     " (was the file changed while it was read?)");
  });
}

}  // namespace vit
