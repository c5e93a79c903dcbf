#pragma once
#include <stddef.h>
#include <stdint.h>

// Thin C shim over libpng and libjpeg(-turbo). Every entry point decodes or encodes a whole image
// held in memory, owns the libraries' setjmp/longjmp error paths, prints nothing, and reports any
// failure as a return value != 0 plus a NUL-terminated message in `error` (never exit/abort).
// Shared by Imaging (PNG/JPEG files) and MedicalFormats (JPEG fragments inside DICOM).

#ifdef __cplusplus
extern "C" {
#endif

/// A decoded image: samples interleaved row-major (HWC), one uint16 per sample whatever the
/// depth (0...255 for 8-bit, 0...65535 for 16-bit). `samples` is malloc'd; release with cic_free.
typedef struct CICImage {
    int32_t width;
    int32_t height;
    int32_t channels;   // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int32_t bit_depth;  // 8 or 16
    uint16_t *samples;
} CICImage;

/// Size of the error buffer callers should pass (longer messages are truncated).
#define CIC_ERROR_SIZE 256

/// Decodes a PNG (any colour type and depth, interlaced or not). Palette and tRNS become RGB(A);
/// 1/2/4-bit gray becomes 8-bit; 16-bit stays 16-bit. Images with a side above `max_side` or more
/// than `max_pixels` pixels are refused after reading the header, before any pixel memory is
/// allocated. With `buffer` != NULL the samples go there (it must hold width × height × channels
/// samples, `buffer_count`; get them from cic_probe_png) and out->samples == buffer; otherwise
/// they are malloc'd.
int cic_decode_png(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels,
                   uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size);

/// Decodes a baseline or progressive 8-bit JPEG to gray or RGB (limits and `buffer` as for PNG).
/// CMYK/YCCK is refused. Corrupt or truncated entropy data (libjpeg's "premature end of data",
/// "premature end of data segment", "bad Huffman code", ... warnings) is an error, not silently
/// padded with grey; so are more than 1000 scans (a progressive-JPEG CPU bomb).
int cic_decode_jpeg(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels,
                    uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size);

/// Reads only the header: fills width, height, channels and bit_depth (as the decoders would
/// return them) and leaves samples NULL.
int cic_probe_png(const uint8_t *data, size_t size, CICImage *out, char *error, size_t error_size);
int cic_probe_jpeg(const uint8_t *data, size_t size, CICImage *out, char *error, size_t error_size);

/// Encodes interleaved samples as PNG (channels 1-4, bit depth 8 or 16). `compression` is zlib's
/// level 0-9; `interlace` != 0 writes Adam7. On success `*out` is malloc'd (free with cic_free).
int cic_encode_png(const uint16_t *samples, int32_t width, int32_t height, int32_t channels,
                   int32_t bit_depth, int32_t compression, int32_t interlace,
                   uint8_t **out, size_t *out_size, char *error, size_t error_size);

/// Encodes 8-bit gray (channels 1) or RGB (channels 3) samples as baseline JPEG at `quality`
/// 1-100 (4:2:0 chroma for RGB, libjpeg's defaults). `*out` is malloc'd (free with cic_free).
int cic_encode_jpeg(const uint16_t *samples, int32_t width, int32_t height, int32_t channels,
                    int32_t quality, uint8_t **out, size_t *out_size, char *error, size_t error_size);

/// Frees memory returned by this shim.
void cic_free(void *pointer);

#ifdef __cplusplus
}
#endif
