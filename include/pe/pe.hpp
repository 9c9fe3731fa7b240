#pragma once
// Umbrella header for perception_retrieval::pe, the torch-free core (link
// perception_retrieval::pe; the encoder has its own header, pe/encoder.hpp).
// Thread safety: see each included header.

#include "pe/cpu.hpp"
#include "pe/error.hpp"
#include "pe/image.hpp"
#include "pe/metrics.hpp"
#include "pe/report.hpp"
#include "pe/retriever.hpp"
#include "pe/stats.hpp"
#include "pe/version.hpp"
