#include "image_header.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vit {

namespace {

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
uint32_t le16(const uint8_t* p) { return uint32_t(p[1]) << 8 | p[0]; }
uint32_t le24(const uint8_t* p) { return uint32_t(p[2]) << 16 | le16(p); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[3]) << 24 | le24(p); }

std::optional<ImageHeader> sized(const char* format, int64_t width, int64_t height,
                                 int64_t block_pixels = 0) {
  ImageHeader h;
  h.format = format;
  h.width = width;
  h.height = height;
  h.block_pixels = block_pixels;
  return h;
}

std::optional<ImageHeader> jpeg(const uint8_t* b, size_t n) {
  // Walk the segments to the frame header (SOFn); none before the scan data means no size.
  size_t i = 2;
  while (i < n) {
    if (b[i] != 0xff) return std::nullopt;
    while (i < n && b[i] == 0xff) ++i;  // fill bytes
    if (i >= n) break;
    const uint8_t marker = b[i++];
    if (marker == 0xd8 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    if (marker == 0xd9 || marker == 0xda || i + 2 > n) break;
    const bool sof =
        marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
    if (sof) {
      if (i + 7 > n) break;
      return sized("JPEG", be16(b + i + 5), be16(b + i + 3));
    }
    const uint32_t length = be16(b + i);
    if (length < 2) return std::nullopt;  // a segment length counts its own two bytes
    i += length;
  }
  return std::nullopt;
}

// TIFF and BigTIFF: ImageWidth (256), ImageLength (257), TileWidth (322), TileLength (323) and
// RowsPerStrip (278) from the first IFD, the one OpenCV's decoder reads.
std::optional<ImageHeader> tiff(const uint8_t* b, size_t n) {
  const bool little = b[0] == 'I';
  auto u16 = [&](size_t at) { return little ? le16(b + at) : be16(b + at); };
  auto u32 = [&](size_t at) { return little ? le32(b + at) : be32(b + at); };
  auto u64 = [&](size_t at) {
    const uint64_t lo = u32(at), hi = u32(at + 4);
    return little ? hi << 32 | lo : lo << 32 | hi;
  };
  const bool big = u16(2) == 43;
  uint64_t ifd = 0, count = 0;
  size_t entry_size = 12, count_size = 2;
  if (big) {
    if (n < 16 || u16(4) != 8 || u16(6) != 0) return std::nullopt;
    ifd = u64(8);
    entry_size = 20;
    count_size = 8;
  } else {
    ifd = u32(4);
  }
  if (ifd > n || n - ifd < count_size) return std::nullopt;
  count = big ? u64(size_t(ifd)) : u16(size_t(ifd));
  const size_t first = size_t(ifd) + count_size;
  if (count > (n - first) / entry_size) return std::nullopt;  // the IFD runs past the end
  int64_t width = -1, height = -1, tile_w = 0, tile_h = 0, rows_per_strip = 0;
  // A size tag given twice is ambiguous (which one would libtiff use?): no size then.
  bool seen[5] = {};
  for (uint64_t k = 0; k < count; ++k) {
    const size_t e = first + size_t(k) * entry_size;
    const uint32_t tag = u16(e), type = u16(e + 2);
    const uint64_t values = big ? u64(e + 4) : u32(e + 4);
    const size_t value = e + (big ? 12 : 8);
    if (values != 1) continue;
    int64_t v = -1;
    if (type == 3) v = u16(value);                     // SHORT
    else if (type == 4) v = u32(value);                // LONG
    else if (type == 16 && big) v = int64_t(std::min<uint64_t>(u64(value), INT64_MAX));  // LONG8
    const uint32_t tags[5] = {256, 257, 322, 323, 278};
    for (int t = 0; t < 5; ++t)
      if (tag == tags[t]) {
        if (seen[t]) return std::nullopt;
        seen[t] = true;
      }
    if (v < 0) continue;
    if (tag == 256) width = v;
    if (tag == 257) height = v;
    if (tag == 322) tile_w = v;
    if (tag == 323) tile_h = v;
    if (tag == 278 && v != 0xffffffff) rows_per_strip = v;  // 2^32 - 1: one strip
  }
  if (width < 0 || height < 0) return std::nullopt;
  // The decoder's buffer for one tile, or one strip of rows_per_strip full rows.
  int64_t block = 0;
  if (tile_w > 0 || tile_h > 0) {
    if (__builtin_mul_overflow(tile_w, tile_h, &block)) block = INT64_MAX;
  } else if (rows_per_strip > height) {
    if (__builtin_mul_overflow(width, rows_per_strip, &block)) block = INT64_MAX;
  }
  return sized("TIFF", width, height, block);
}

// PNM (P1-P6: magic, then width, height as decimal tokens, '#' comments) and PAM (P7: WIDTH and
// HEIGHT lines up to ENDHDR).
std::optional<ImageHeader> pnm(const uint8_t* b, size_t n) {
  size_t i = 2;
  auto skip = [&] {
    while (i < n) {
      if (b[i] == '#') {
        while (i < n && b[i] != '\n' && b[i] != '\r') ++i;
      } else if (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == '\v' ||
                 b[i] == '\f') {
        ++i;
      } else {
        break;
      }
    }
  };
  // A decimal number, saturated at 2^62 (anything that large is refused anyway); -1 if none.
  auto number = [&]() -> int64_t {
    if (i >= n || b[i] < '0' || b[i] > '9') return -1;
    int64_t v = 0;
    for (; i < n && b[i] >= '0' && b[i] <= '9'; ++i)
      v = v > (int64_t(1) << 62) / 10 ? int64_t(1) << 62 : v * 10 + (b[i] - '0');
    return v;
  };
  if (b[1] == '7') {
    int64_t width = -1, height = -1;
    while (i < n) {
      skip();
      const size_t start = i;
      while (i < n && b[i] > ' ') ++i;
      const std::string key(reinterpret_cast<const char*>(b + start), i - start);
      if (key == "ENDHDR") break;
      while (i < n && (b[i] == ' ' || b[i] == '\t')) ++i;
      if (key == "WIDTH") width = number();
      else if (key == "HEIGHT") height = number();
      while (i < n && b[i] != '\n') ++i;  // the rest of the line (DEPTH, MAXVAL, TUPLTYPE)
    }
    if (width < 0 || height < 0) return std::nullopt;
    return sized("PNM", width, height);
  }
  skip();
  const int64_t width = number();
  skip();
  const int64_t height = number();
  if (width < 0 || height < 0) return std::nullopt;
  return sized("PNM", width, height);
}

std::string megapixels(double pixels) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f", pixels / 1e6);
  return buf;
}

}  // namespace

std::optional<ImageHeader> read_image_header(const uint8_t* b, size_t n) {
  if (n >= 24 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(b + 12, "IHDR", 4) == 0)
    return sized("PNG", be32(b + 16), be32(b + 20));
  if (n >= 26 && b[0] == 'B' && b[1] == 'M') {
    if (le32(b + 14) == 12) return sized("BMP", le16(b + 18), le16(b + 20));  // BITMAPCOREHEADER
    // Signed: a negative height means top-down rows. Widened first: -INT32_MIN fits 64 bits.
    const int64_t w = int32_t(le32(b + 18)), h = int32_t(le32(b + 22));
    return sized("BMP", w < 0 ? -w : w, h < 0 ? -h : h);
  }
  if (n >= 30 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) {
    if (std::memcmp(b + 12, "VP8 ", 4) == 0)
      return sized("WebP", le16(b + 26) & 0x3fff, le16(b + 28) & 0x3fff);
    if (std::memcmp(b + 12, "VP8L", 4) == 0)
      return sized("WebP", 1 + int64_t(le16(b + 21) & 0x3fff),
                   1 + int64_t((le32(b + 21) >> 14) & 0x3fff));
    if (std::memcmp(b + 12, "VP8X", 4) == 0)
      return sized("WebP", 1 + int64_t(le24(b + 24)), 1 + int64_t(le24(b + 27)));
    return std::nullopt;
  }
  if (n >= 4 && b[0] == 0xff && b[1] == 0xd8) return jpeg(b, n);
  if (n >= 8 && ((b[0] == 'I' && b[1] == 'I' && (le16(b + 2) == 42 || le16(b + 2) == 43)) ||
                 (b[0] == 'M' && b[1] == 'M' && (be16(b + 2) == 42 || be16(b + 2) == 43))))
    return tiff(b, n);
  if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return pnm(b, n);
  return std::nullopt;
}

std::string check_image_header(const uint8_t* data, size_t size, int64_t max_pixels) {
  const auto h = read_image_header(data, size);
  if (!h)
    return std::string("not an image of a format ViT Studio reads (") + kImageFormats +
           "), or its header is cut short: its size cannot be checked before decoding";
  const std::string dims = std::to_string(h->width) + "x" + std::to_string(h->height);
  if (h->width == 0 || h->height == 0) return std::string(h->format) + " header declares " + dims + " pixels: no image";
  // Each side is checked before the product, so the product cannot overflow.
  if (h->width > max_pixels || h->height > max_pixels || h->width * h->height > max_pixels)
    return dims + " is " + megapixels(double(h->width) * double(h->height)) +
           " megapixels, above the limit of " + megapixels(double(max_pixels)) +
           ": downscale it first (e.g. to 1024 pixels a side)";
  if (h->block_pixels > max_pixels)
    return std::string(h->format) + " tiles or strips of " + megapixels(double(h->block_pixels)) +
           " megapixels, above the limit of " + megapixels(double(max_pixels)) +
           ": a damaged or hostile file";
  return {};
}

}  // namespace vit
