// A cheap look at a data set before training: the folder exists and holds the files the loader
// (datasets.h) will read, with sizes that fit their format. Nothing is decoded, so the window can
// check on every edit; a file that passes can still fail to load (a corrupt gzip stream), and
// then training reports the loader's message.
//
// Torch-free (the window's settings panel uses it).
#pragma once

#include <string>

namespace vit {

// Why the data set `spec` ("fashion-mnist[:DIR]", "cifar10:DIR", "cifar100:DIR") cannot be
// loaded, naming the file and what to do; "" when it looks loadable. Image folders ("folder:DIR")
// and unknown kinds are not judged here ("").
std::string dataset_problem(const std::string& spec);

}  // namespace vit
