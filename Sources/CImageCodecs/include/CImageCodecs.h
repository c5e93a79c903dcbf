// Thin C shim over libpng and libjpeg: their errors longjmp or exit, which Swift cannot survive,
// so every entry point here sets up the jump buffer and turns failures into a message string.
#pragma once
#include <stddef.h>
#include <stdint.h>
