#pragma once
// Umbrella header for the header-only part of perception_retrieval (no torch).
// Thread safety: see each included header.

#include "pe/image.hpp"
#include "pe/metrics.hpp"
#include "pe/report.hpp"
#include "pe/retriever.hpp"
#include "pe/stats.hpp"
#include "pe/version.hpp"
