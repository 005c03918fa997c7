// A weights-only unpickler for torch.save's zip format. See pth.h for why LibTorch's is not used.
#include "pth.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include "zip_archive.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pth.cpp assumes little-endian");
#endif

namespace vit {

namespace {

std::runtime_error error(const std::string& what, const std::string& problem) {
  return std::runtime_error(what + ": " + problem);
}

struct StorageType {
  const char* name;  // torch.<name>
  c10::ScalarType type;
  uint64_t size;
};
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", c10::ScalarType::Float, 4},   {"DoubleStorage", c10::ScalarType::Double, 8},
    {"HalfStorage", c10::ScalarType::Half, 2},     {"BFloat16Storage", c10::ScalarType::BFloat16, 2},
    {"LongStorage", c10::ScalarType::Long, 8},     {"IntStorage", c10::ScalarType::Int, 4},
    {"ShortStorage", c10::ScalarType::Short, 2},   {"CharStorage", c10::ScalarType::Char, 1},
    {"ByteStorage", c10::ScalarType::Byte, 1},     {"BoolStorage", c10::ScalarType::Bool, 1},
};

// The pickle values a state_dict is made of.
enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "a bool";
    case Kind::Int: return "an int";
    case Kind::Float: return "a float";
    case Kind::String: return "a string";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "a tuple";
    case Kind::List: return "a list";
    case Kind::Dict: return "a dict";
    case Kind::Global: return "a global";
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
  }
  return "?";
}

// Values live in the unpickler's arena and refer to each other by plain pointers: nothing is
// destroyed or walked recursively, so no nesting can exhaust the stack, and no reference cycle
// can leak. A container may only change while it is not inside another one (torch.save's pickles
// always fill a container before using it), which makes cycles impossible and `depth` exact.
struct Value;
using ValuePtr = Value*;
struct Value {
  Kind kind = Kind::None;
  bool contained = false;                       // inside a tuple, list or dict: frozen
  uint32_t depth = 0;                           // containers: 1 + the deepest item's depth
  int64_t i = 0;                                // Bool, Int
  double f = 0;                                 // Float
  std::string s;                                // String, Bytes, Global ("module.name")
  std::vector<ValuePtr> items;                  // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // Dict, in insertion order
  at::Tensor tensor;                            // Storage (flat) or Tensor
};

// The globals a weights-only load may name (torch.load(weights_only=True) allows these too).
bool allowed_global(const std::string& name) {
  if (name == "collections.OrderedDict" || name == "torch._utils._rebuild_tensor_v2" ||
      name == "torch._utils._rebuild_parameter")
    return true;
  for (const auto& s : kStorageTypes)
    if (name == std::string("torch.") + s.name) return true;
  return false;
}

class Unpickler {
 public:
  Unpickler(const ZipReader& zip, std::string prefix, std::string pickle, std::string what)
      : zip_(zip), prefix_(std::move(prefix)), data_(std::move(pickle)), what_(std::move(what)) {}

  ValuePtr run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                                  // PROTO
        case 0x95: bytes(8); break;                              // FRAME (protocol 4)
        case '.':                                                // STOP
          if (stack_.size() != 1) fail(at, "STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        // None, True and False are shared (no value is ever changed in place): 17 MB of None
        // opcodes then cost only the stack, which is capped like the arena.
        case 'N': push(&none_); break;
        case 0x88: push(&true_); break;                           // NEWTRUE
        case 0x89: push(&false_); break;                          // NEWFALSE
        case 'K': push_int(u8()); break;                          // BININT1
        case 'M': push_int(int64_t(le(2))); break;                // BININT2
        case 'J': push_int(int32_t(le(4))); break;                // BININT
        case 0x8a: {                                              // LONG1
          const uint8_t n = u8();
          if (n > 8) fail(at, "an integer of " + std::to_string(n) + " bytes");
          uint64_t v = n ? le(n) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign
          push_int(int64_t(v));
          break;
        }
        case 'G': {                                               // BINFLOAT (big-endian)
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = bits << 8 | u8();
          auto v = make(Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X': push_string(Kind::String, le(4)); break;        // BINUNICODE
        case 0x8c: push_string(Kind::String, u8()); break;        // SHORT_BINUNICODE
        case 0x8d: push_string(Kind::String, le(8)); break;       // BINUNICODE8
        case 'B': push_string(Kind::Bytes, le(4)); break;         // BINBYTES
        case 'C': push_string(Kind::Bytes, u8()); break;          // SHORT_BINBYTES
        case ')': push(make(Kind::Tuple)); break;                 // EMPTY_TUPLE
        case ']': push(make(Kind::List)); break;                  // EMPTY_LIST
        case '}': push(make(Kind::Dict)); break;                  // EMPTY_DICT
        case '(':                                                 // MARK
          if (marks_.size() >= kMaxPickleValues) fail(at, "more than " + std::to_string(kMaxPickleValues) + " MARKs open");
          marks_.push_back(stack_.size());
          break;
        case 't': {                                               // TUPLE
          auto items = pop_to_mark(at);
          auto v = make(Kind::Tuple);
          for (ValuePtr item : items) put_inside(at, v, item);
          v->items = std::move(items);
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                        // TUPLE1..3
          const size_t n = size_t(op - 0x84);
          if (stack_.size() < n + floor()) fail(at, "a tuple with too few values on the stack");
          auto v = make(Kind::Tuple);
          v->items.assign(stack_.end() - long(n), stack_.end());
          for (ValuePtr item : v->items) put_inside(at, v, item);
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'a': {                                               // APPEND
          ValuePtr item = pop(at);
          ValuePtr list = top(at, Kind::List);
          put_inside(at, list, item);
          list->items.push_back(item);
          break;
        }
        case 'e': {                                               // APPENDS
          auto items = pop_to_mark(at);
          ValuePtr list = top(at, Kind::List);
          for (ValuePtr item : items) put_inside(at, list, item);
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {                                               // SETITEM
          ValuePtr value = pop(at), key = pop(at);
          ValuePtr dict = top(at, Kind::Dict);
          put_inside(at, dict, key);
          put_inside(at, dict, value);
          dict->dict.emplace_back(key, value);
          break;
        }
        case 'u': {                                               // SETITEMS
          auto items = pop_to_mark(at);
          if (items.size() % 2) fail(at, "SETITEMS with an odd number of values");
          ValuePtr dict = top(at, Kind::Dict);
          for (ValuePtr item : items) put_inside(at, dict, item);
          for (size_t k = 0; k < items.size(); k += 2) dict->dict.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'q': memo_put(u8()); break;                          // BINPUT
        case 'r': memo_put(le(4)); break;                         // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;                 // MEMOIZE
        case 'h': memo_get(at, u8()); break;                      // BINGET
        case 'j': memo_get(at, le(4)); break;                     // LONG_BINGET
        case '0': pop(at); break;                                 // POP
        case '1': pop_to_mark(at); break;                         // POP_MARK
        case 'c': {                                               // GLOBAL
          const std::string module = line(at), name = line(at);
          const std::string full = module + "." + name;
          if (!allowed_global(full)) refuse_global(full);
          auto v = make(Kind::Global);
          v->s = full;
          push(v);
          break;
        }
        case 'Q': push(persistent_load(at, pop(at))); break;      // BINPERSID
        case 'R': {                                               // REDUCE
          ValuePtr args = pop(at), callable = pop(at);
          push(reduce(at, callable, args));
          break;
        }
        case 'b': {                                               // BUILD
          pop(at);  // an OrderedDict's attributes (state_dict's `_metadata`): not needed
          const ValuePtr target = top(at);
          if (target->kind != Kind::Dict && target->kind != Kind::Tensor)
            fail(at, std::string("BUILD on ") + kind_name(target->kind));
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(at, std::string("the pickle opcode ") + hex +
                       ", which torch.save does not write for a state_dict");
        }
      }
    }
  }

 private:
  // A new value in the arena; a pickle may make at most kMaxPickleValues (ViT-L/16's state_dict
  // pickle is ~9,000 opcodes in all; 17 MB of empty tuples, which deflate to 17 KB, would be 17
  // million values).
  ValuePtr make(Kind k) {
    if (values_.size() >= kMaxPickleValues)
      fail(pos_, "the pickle makes more than " + std::to_string(kMaxPickleValues) +
                     " values (ViT-L/16's state_dict pickle has about 9,000 opcodes in all): a "
                     "damaged or hostile file");
    values_.emplace_back();
    values_.back().kind = k;
    return &values_.back();
  }
  // Records that `item` goes inside `container` (checked before it does).
  void put_inside(size_t at, ValuePtr container, ValuePtr item) {
    if (container->contained)
      fail(at, std::string(kind_name(container->kind)) +
                   " is changed after it was put inside another value, which torch.save never "
                   "does");
    if (item == container)
      fail(at, std::string(kind_name(container->kind)) + " is put into itself (a reference cycle)");
    item->contained = true;
    container->depth = std::max(container->depth, item->depth + 1);
    if (container->depth > kMaxPickleDepth)
      fail(at, "values nest deeper than " + std::to_string(kMaxPickleDepth) +
                   " levels (a training checkpoint nests about 5)");
  }
  [[noreturn]] void fail(size_t at, const std::string& problem) const {
    throw error(what_, "malformed pickle at byte " + std::to_string(at) + ": " + problem);
  }
  [[noreturn]] void refuse_global(const std::string& name) const {
    std::string hint = "save just the tensors: torch.save(model.state_dict(), 'weights.pth'), or "
                       "convert to safetensors";
    if (name.rfind("__torch__", 0) == 0)
      hint = "this is a TorchScript module (torch.jit.save), not a state_dict; " + hint;
    throw error(what_, "the pickle refers to " + name +
                           ", which a weights-only reader does not load (allowed: tensors, "
                           "OrderedDict and plain values; nothing from a file is ever run). " +
                           hint);
  }
  uint8_t u8() {
    if (pos_ >= data_.size()) fail(pos_, "it ends early (truncated)");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t(u8()) << (8 * k);
    return v;
  }
  std::string bytes(uint64_t n) {
    if (n > data_.size() - pos_)
      fail(pos_, "it ends early (truncated): a " + std::to_string(n) + "-byte value runs past the end");
    std::string out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  std::string line(size_t at) {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string::npos || end - pos_ > 256)
      fail(at, "a GLOBAL name without an end (truncated or damaged)");
    std::string out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(ValuePtr v) {
    if (stack_.size() >= kMaxPickleValues)
      fail(pos_, "more than " + std::to_string(kMaxPickleValues) + " values on the stack");
    stack_.push_back(v);
  }
  void push_int(int64_t i) {
    auto v = make(Kind::Int);
    v->i = i;
    push(v);
  }
  void push_string(Kind kind, uint64_t n) {
    auto v = make(kind);
    v->s = bytes(n);
    push(v);
  }
  ValuePtr pop(size_t at) {
    if (stack_.size() <= floor()) fail(at, "a value is taken from an empty stack");
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr top(size_t at) const {
    if (stack_.size() <= floor()) fail(at, "the stack is empty");
    return stack_.back();
  }
  ValuePtr top(size_t at, Kind kind) const {
    const ValuePtr v = top(at);
    if (v->kind != kind)
      fail(at, std::string("expected ") + kind_name(kind) + " on the stack, found " + kind_name(v->kind));
    return v;
  }
  std::vector<ValuePtr> pop_to_mark(size_t at) {
    if (marks_.empty()) fail(at, "no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + long(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(uint64_t index) {
    if (stack_.size() <= floor()) fail(pos_, "BINPUT with an empty stack");
    if (memo_.size() >= kMaxPickleValues && memo_.count(index) == 0)
      fail(pos_, "more than " + std::to_string(kMaxPickleValues) + " memo entries");
    memo_[index] = stack_.back();
  }
  void memo_get(size_t at, uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(at, "memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  std::vector<int64_t> int_tuple(size_t at, const ValuePtr& v, const char* what) const {
    if (v->kind != Kind::Tuple) fail(at, std::string("tensor ") + what + " is not a tuple");
    if (v->items.size() > 64) fail(at, std::string("tensor ") + what + " has more than 64 dimensions");
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
      if (item->kind != Kind::Int || item->i < 0)
        fail(at, std::string("tensor ") + what + " holds something other than non-negative integers");
      out.push_back(item->i);
    }
    return out;
  }

  // ('storage', torch.XStorage, key, location, numel) -> the storage's bytes from data/<key>.
  ValuePtr persistent_load(size_t at, const ValuePtr& pid) {
    const auto& t = pid->items;
    if (pid->kind != Kind::Tuple || t.size() != 5 || t[0]->kind != Kind::String ||
        t[0]->s != "storage" || t[1]->kind != Kind::Global || t[2]->kind != Kind::String ||
        t[4]->kind != Kind::Int || t[4]->i < 0)
      fail(at, "a persistent id that is not ('storage', type, key, location, size)");
    const StorageType* type = nullptr;
    for (const auto& s : kStorageTypes)
      if (t[1]->s == std::string("torch.") + s.name) type = &s;
    if (!type) fail(at, "a storage of type " + t[1]->s);
    const std::string& key = t[2]->s;
    if (auto it = storages_.find(key); it != storages_.end()) {
      if (it->second->tensor.scalar_type() != type->type || it->second->tensor.numel() != t[4]->i)
        fail(at, "storage '" + key + "' is used with two different types or sizes");
      return it->second;
    }
    const std::string entry_name = prefix_ + "data/" + key;
    const ZipEntry* entry = zip_.find(entry_name);
    if (!entry) throw error(what_, "the pickle names storage '" + key + "' but the archive has no '" + entry_name + "'");
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(uint64_t(t[4]->i), type->size, &nbytes) || nbytes != entry->size)
      throw error(what_, "storage '" + key + "' should hold " + std::to_string(t[4]->i) + " " +
                             type->name + " elements but '" + entry_name + "' has " +
                             std::to_string(entry->size) + " bytes");
    auto v = make(Kind::Storage);
    v->tensor = at::empty({t[4]->i}, at::TensorOptions().dtype(type->type));
    ZipStream stream = zip_.open(*entry);
    if (nbytes > 0) stream.read_exact(v->tensor.data_ptr(), nbytes);
    stream.expect_end();
    if (type->type == c10::ScalarType::Bool) {
      const auto* b = static_cast<const unsigned char*>(v->tensor.data_ptr());
      for (uint64_t k = 0; k < nbytes; ++k)
        if (b[k] > 1) throw error(what_, "bool storage '" + key + "' holds a byte other than 0 or 1");
    }
    storages_[key] = v;
    storage_bytes_ += nbytes;
    return v;
  }

  ValuePtr reduce(size_t at, const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Kind::Global) fail(at, std::string("REDUCE calls ") + kind_name(callable->kind));
    if (args->kind != Kind::Tuple) fail(at, "REDUCE arguments are not a tuple");
    const auto& a = args->items;
    const std::string& name = callable->s;
    if (name == "collections.OrderedDict") {
      if (!a.empty()) fail(at, "OrderedDict called with arguments");
      return make(Kind::Dict);
    }
    if (name == "torch._utils._rebuild_parameter") {
      if (a.size() < 2 || a[0]->kind != Kind::Tensor) fail(at, "_rebuild_parameter without a tensor");
      return a[0];
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (a.size() < 6 || a.size() > 7 || a[0]->kind != Kind::Storage || a[1]->kind != Kind::Int)
        fail(at, "_rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, ...)");
      const at::Tensor& storage = a[0]->tensor;
      const int64_t offset = a[1]->i;
      const auto size = int_tuple(at, a[2], "size");
      const auto stride = int_tuple(at, a[3], "stride");
      if (size.size() != stride.size()) fail(at, "a tensor whose size and stride differ in length");
      // The view must lie inside the storage: offset + sum((size_i - 1) * stride_i) < numel.
      const uint64_t n = uint64_t(storage.numel());
      bool empty = false;
      for (int64_t s : size) empty = empty || s == 0;
      uint64_t last = uint64_t(offset);
      bool overflow = offset < 0;
      for (size_t k = 0; k < size.size() && !empty; ++k) {
        uint64_t span = 0;
        overflow = overflow || __builtin_mul_overflow(uint64_t(size[k] - 1), uint64_t(stride[k]), &span) ||
                   __builtin_add_overflow(last, span, &last);
      }
      if (overflow || (empty ? uint64_t(offset) > n : last >= n))
        throw error(what_, "a tensor's offset, size and stride reach outside its " +
                               std::to_string(n) + "-element storage (a damaged or hostile file)");
      // Nothing may be allocated from these numbers but what the file's bytes justify: a view
      // with more elements than its storage has overlapping strides (a stride-0 tensor saved
      // from expand()), and copying it dense once made terabytes from a 1-element storage.
      uint64_t numel = 1, extent = 1;
      for (int64_t s : size) {
        overflow = overflow || __builtin_mul_overflow(numel, uint64_t(s), &numel) ||
                   __builtin_mul_overflow(extent, uint64_t(std::max<int64_t>(s, 1)), &extent);
      }
      if (overflow || extent > uint64_t(std::numeric_limits<int64_t>::max()))
        throw error(what_, "a tensor's size overflows 64-bit sizes (a damaged or hostile file)");
      if (numel > n)
        throw error(what_, "a tensor's " + std::to_string(numel) + " elements view a " +
                               std::to_string(n) + "-element storage: its strides overlap (an "
                               "expand()ed or broadcast tensor). Save t.contiguous() instead");
      auto v = make(Kind::Tensor);
      v->tensor = storage.as_strided(size, stride, offset);
      if (!v->tensor.is_contiguous()) {
        // A strided view (every element inside the storage) is copied to be contiguous; all
        // copies together may not need more than the storages' bytes, so viewing the same
        // storage again and again cannot multiply memory.
        copied_bytes_ += numel * uint64_t(storage.element_size());
        if (copied_bytes_ > storage_bytes_)
          throw error(what_, "its non-contiguous tensors need more memory than the file's " +
                                 std::to_string(storage_bytes_) +
                                 " storage bytes to copy (the same bytes viewed many times): a "
                                 "damaged or hostile file");
        v->tensor = v->tensor.clone(at::MemoryFormat::Contiguous);
      }
      return v;
    }
    fail(at, name + " cannot be called");
  }

  const ZipReader& zip_;
  std::string prefix_, data_, what_;
  size_t pos_ = 0;
  std::deque<Value> values_;  // the arena: stable addresses, freed flat
  Value none_{Kind::None}, true_{Kind::Bool, false, 0, 1}, false_{Kind::Bool};
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
  std::map<std::string, ValuePtr> storages_;
  uint64_t storage_bytes_ = 0;  // bytes of every storage read
  uint64_t copied_bytes_ = 0;   // bytes of the contiguous copies of strided views
};

// A dict of string -> tensor, else nullptr.
const Value* as_state_dict(const Value& v) {
  if (v.kind != Kind::Dict || v.dict.empty()) return nullptr;
  for (const auto& [k, value] : v.dict)
    if (k->kind != Kind::String || value->kind != Kind::Tensor) return nullptr;
  return &v;
}

}  // namespace

NamedTensors load_pth(const std::string& path) {
  ZipReader zip(path);
  const ZipEntry* pickle = nullptr;
  for (const auto& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (pickle) throw error(path, "holds two pickles ('" + pickle->name + "' and '" + e.name + "')");
      pickle = &e;
    }
  }
  if (!pickle) {
    for (const auto& e : zip.entries())
      if (e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0)
        throw error(path, "is a NumPy .npz archive, not a PyTorch file; name it .npz");
    throw error(path, "is a zip archive without '<name>/data.pkl': not a file written by torch.save");
  }
  const std::string prefix = pickle->name.substr(0, pickle->name.size() - std::string("data.pkl").size());
  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
    const std::string byteorder = zip.read_all(*order, 16);
    if (byteorder != "little")
      throw error(path, "was saved on a '" + byteorder + "'-endian machine; only little-endian files are read");
  }
  for (const auto& e : zip.entries())
    if (e.name.rfind(prefix + "code/", 0) == 0)
      throw error(path, "is a TorchScript module (torch.jit.save), not a state_dict: save "
                        "model.state_dict() with torch.save, or convert to safetensors");

  Unpickler unpickler(zip, prefix, zip.read_all(*pickle, kMaxPickleBytes), path);
  const ValuePtr root = unpickler.run();

  const Value* state = as_state_dict(*root);
  if (!state && root->kind == Kind::Dict) {
    for (const char* key : {"state_dict", "model", "model_state_dict", "module"}) {
      for (const auto& [k, value] : root->dict) {
        if (k->kind == Kind::String && k->s == key && (state = as_state_dict(*value))) break;
      }
      if (state) break;
    }
  }
  if (!state)
    throw error(path, std::string("holds ") + kind_name(root->kind) +
                          " without a state_dict (a dict of names to tensors, at the top or under "
                          "'state_dict', 'model', 'model_state_dict' or 'module')");
  NamedTensors out;
  std::set<std::string> seen;
  for (const auto& [k, value] : state->dict) {
    if (!seen.insert(k->s).second) throw error(path, "has the tensor '" + k->s + "' twice");
    out.emplace_back(k->s, value->tensor);
  }
  return out;
}

}  // namespace vit
