// Image files through the project's two readers: read_image (inference: `vit predict`, drag and
// drop) with its header check and pixel limit, then the conversions the model input and the
// display use; and load_image (the image-folder loader's decoder, same header check).
#include <opencv2/core.hpp>

#include "datasets.h"
#include "fuzz_common.h"
#include "inference.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cv::setNumThreads(1);  // one input at a time; OpenCV's pool only adds noise here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vit_fuzz::input_file("in.img", data, size);
  vit_fuzz::expect_clean([&] {
    const cv::Mat image = vit::read_image(path);
    uint8_t planes[3 * 8 * 8];
    vit::convert_decoded_image(image, 8, 3, planes);
    vit::display_image(image, 16, 32);
  });
  vit_fuzz::expect_clean([&] { vit::load_image(path, 8, 1); });
  return 0;
}
