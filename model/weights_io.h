// Pretrained weights in and out, in four parts: weights_import.h (formats, names, config
// inference), finetune.h (head, position embeddings, channels, frozen backbone), param_groups.h
// (weight decay and layer-wise learning-rate decay) and weights_export.h (timm-ready safetensors).
#pragma once

#include "finetune.h"
#include "param_groups.h"
#include "weights_export.h"
#include "weights_import.h"
