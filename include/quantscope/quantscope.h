/* quantscope/quantscope.h: the umbrella header of the quantscope C API. */
#ifndef QUANTSCOPE_H
#define QUANTSCOPE_H

#include "quantscope/eval.h"
#include "quantscope/fix.h"
#include "quantscope/int8.h"
#include "quantscope/model.h"
#include "quantscope/quant.h"
#include "quantscope/stats.h"
#include "quantscope/status.h"
#include "quantscope/tokenizer.h"
#include "quantscope/train.h"

#endif
