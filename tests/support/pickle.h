// Hand-made pickles as torch.save (protocol 2) writes them, and little-endian bytes: what the
// weights-io suite and the fuzz corpus writer build hostile and valid .pth files from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vit_test::pickle {

// `n` as `bytes` little-endian bytes.
inline std::string le(uint64_t n, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  return out;
}

inline std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

inline std::string pk_global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}
inline std::string pk_str(const std::string& s) { return "X" + le(s.size(), 4) + s; }
inline std::string pk_int(int64_t n) {
  if (n >= 0 && n < 256) return "K" + le(uint64_t(n), 1);
  if (n >= 0 && n < (int64_t(1) << 31)) return "J" + le(uint64_t(n), 4);
  return "\x8a\x08" + le(uint64_t(n), 8);  // LONG1, 8 bytes
}
inline std::string pk_tuple(const std::vector<int64_t>& v) {
  std::string out = "(";
  for (int64_t x : v) out += pk_int(x);
  return out + "t";
}
// torch._utils._rebuild_tensor_v2 of storage `key` (numel elements) viewed at offset/size/stride.
inline std::string pk_tensor(const std::string& key, int64_t numel, int64_t offset,
                             const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                             const std::string& storage = "FloatStorage") {
  return pk_global("torch._utils", "_rebuild_tensor_v2") + "((" + pk_str("storage") +
         pk_global("torch", storage) + pk_str(key) + pk_str("cpu") + pk_int(numel) + "tQ" +
         pk_int(offset) + pk_tuple(size) + pk_tuple(stride) + "\x89" +
         pk_global("collections", "OrderedDict") + ")Rt" + "R";
}
inline std::string pk_ordered_dict(const std::string& items) {
  return pk_global("collections", "OrderedDict") + ")R(" + items + "u";
}
inline std::string pk_file(const std::string& body) { return std::string("\x80\x02", 2) + body + "."; }

}  // namespace vit_test::pickle
