// What an image file says about itself before it is decoded: its format and declared size, read
// from the first bytes (PNG IHDR, JPEG SOF, BMP info header, WebP VP8/VP8L/VP8X, TIFF's first
// IFD, PNM/PAM header), so a decompression bomb (a few hundred bytes declaring gigapixels) is
// refused before OpenCV allocates anything. Only these six formats are handed to the decoder: a
// file whose header is none of them, or too short to tell, is refused, so no format whose size
// we did not check (Sun raster, JPEG 2000, OpenEXR, HDR...) reaches OpenCV.
//
// Torch- and OpenCV-free: read_image (inference.h) and the image-folder loader (datasets.h) share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace vit {

// Images with more pixels are refused before decoding (a 100-megapixel RGBA 16-bit image already
// needs 800 MB decoded).
inline constexpr int64_t kMaxImagePixels = 100'000'000;
// Image files above this size are refused before they are read into memory.
inline constexpr uint64_t kMaxImageFileBytes = uint64_t(1) << 30;
// Files ViT Studio reads, for error messages.
inline constexpr const char* kImageFormats = "PNG, JPEG, BMP, WebP, TIFF or PNM";

struct ImageHeader {
  const char* format = "";  // "PNG", "JPEG", "BMP", "WebP", "TIFF", "PNM"
  int64_t width = 0, height = 0;
  // The largest block a decoder allocates besides the image, in pixels (TIFF tiles or strips);
  // 0 when the format has none.
  int64_t block_pixels = 0;
};

// The header of `data`, or nullopt when it is none of the formats above or too short to tell.
std::optional<ImageHeader> read_image_header(const uint8_t* data, size_t size);

// "" when `data` has a header we read and at most `max_pixels` pixels (TIFF blocks too), else
// why it may not be decoded, as one line without the file name. Overflow-safe for any declared
// size.
std::string check_image_header(const uint8_t* data, size_t size,
                               int64_t max_pixels = kMaxImagePixels);

}  // namespace vit
