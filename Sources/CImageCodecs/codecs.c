#include "CImageCodecs.h"
// Thin C shim over libpng and libjpeg: their errors longjmp or exit, which Swift cannot survive,
// so every entry point here sets up the jump buffer and turns failures into a message string.
// Nothing is ever printed: warnings are dropped, except libjpeg's corrupt-data warnings ("premature
// end of data", "bad Huffman code", ...), which are promoted to errors, since libjpeg would
// otherwise pad a truncated or damaged file with grey and report success.

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// MARK: - Helpers

static void set_error(char *error, size_t error_size, const char *format, ...) {
    if (error == NULL || error_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

static int host_is_little_endian(void) {
    const uint16_t probe = 1;
    return *(const uint8_t *)&probe == 1;
}

// Widens `count` 8-bit samples stored at the start of `row` into uint16 in place. Runs backwards:
// sample i's two bytes (2i, 2i+1) only overwrite 8-bit samples at indices >= i, already consumed.
static void widen_row_in_place(uint16_t *row, size_t count) {
    const unsigned char *bytes = (const unsigned char *)row;
    for (size_t i = count; i > 0; i--) {
        const unsigned char value = bytes[i - 1];
        row[i - 1] = value;
    }
}

// A growable output buffer for the encoders.
typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
} mem_buffer;

static int mem_reserve(mem_buffer *buffer, size_t needed) {
    if (needed <= buffer->capacity) return 1;
    size_t capacity = buffer->capacity ? buffer->capacity : 4096;
    while (capacity < needed) {
        if (capacity > SIZE_MAX / 2) return 0;
        capacity *= 2;
    }
    uint8_t *grown = realloc(buffer->data, capacity);
    if (grown == NULL) return 0;
    buffer->data = grown;
    buffer->capacity = capacity;
    return 1;
}

void cic_free(void *pointer) { free(pointer); }

// MARK: - PNG

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t position;
    char *error;
    size_t error_size;
    mem_buffer *output;
} png_context;

static void png_error_fn(png_structp png, png_const_charp message) {
    png_context *context = png_get_error_ptr(png);
    set_error(context->error, context->error_size, "%s", message);
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_fn(png_structp png, png_bytep destination, png_size_t length) {
    png_context *context = png_get_io_ptr(png);
    if (length > context->size - context->position) {
        png_error(png, "file is truncated (unexpected end of PNG data)");
    }
    memcpy(destination, context->data + context->position, length);
    context->position += length;
}

static void png_write_fn(png_structp png, png_bytep source, png_size_t length) {
    png_context *context = png_get_io_ptr(png);
    mem_buffer *buffer = context->output;
    if (!mem_reserve(buffer, buffer->size + length)) png_error(png, "out of memory");
    memcpy(buffer->data + buffer->size, source, length);
    buffer->size += length;
}

static void png_flush_fn(png_structp png) { (void)png; }

// Width × height against a pixel limit, without overflow.
static int too_many_pixels(size_t width, size_t height, int64_t max_pixels) {
    if (max_pixels <= 0) return 0;
    if (width != 0 && height > (size_t)max_pixels / width) return 1;
    return (int64_t)(width * height) > max_pixels;
}

static int png_decode_impl(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels, int header_only,
                           uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size) {
    memset(out, 0, sizeof(*out));
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_error(error, error_size, "not a PNG file (bad signature)");
        return 1;
    }
    png_context context = {data, size, 0, error, error_size, NULL};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_error_fn, png_warning_fn);
    if (png == NULL) {
        set_error(error, error_size, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_error(error, error_size, "out of memory");
        return 1;
    }
    // Written after setjmp and freed on the error path, so they must be volatile.
    uint16_t *volatile samples = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(samples);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_read_fn(png, &context, png_read_fn);
    // We apply our own, configurable side limit below; lift libpng's default of 1,000,000.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &depth, &color_type, &interlace, NULL, NULL);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    // PNG stores 16-bit samples big-endian; swap so rows can be read straight into uint16_t.
    if (depth == 16 && host_is_little_endian()) png_set_swap(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    const int channels = png_get_channels(png, info);
    const int bit_depth = png_get_bit_depth(png, info);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = channels;
    out->bit_depth = bit_depth;
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    if (width > (png_uint_32)max_side || height > (png_uint_32)max_side) {
        set_error(error, error_size, "image is %ux%u, above the limit of %d pixels per side",
                  (unsigned)width, (unsigned)height, (int)max_side);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    if (too_many_pixels(width, height, max_pixels)) {
        set_error(error, error_size, "image is %ux%u, above the limit of %lld pixels per image",
                  (unsigned)width, (unsigned)height, (long long)max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    if ((channels < 1 || channels > 4) || (bit_depth != 8 && bit_depth != 16)) {
        set_error(error, error_size, "unsupported PNG layout (%d channels, %d bits)", channels, bit_depth);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    const size_t row_samples = (size_t)width * (size_t)channels;
    if (png_get_rowbytes(png, info) != row_samples * (size_t)(bit_depth / 8)) {
        set_error(error, error_size, "unexpected PNG row size");
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    if (buffer != NULL && buffer_count < row_samples * (size_t)height) {
        set_error(error, error_size, "sample buffer too small for a %ux%ux%d PNG", (unsigned)width, (unsigned)height, channels);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    uint16_t *const target = buffer != NULL ? buffer : malloc(row_samples * (size_t)height * sizeof(uint16_t));
    if (buffer == NULL) samples = target;
    rows = malloc((size_t)height * sizeof(png_bytep));
    if (target == NULL || rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = (png_bytep)(target + (size_t)y * row_samples);
    // Adam7 needs every row in memory at once, so read the whole image rather than row by row.
    png_read_image(png, rows);
    png_read_end(png, NULL);
    if (bit_depth == 8) {
        for (png_uint_32 y = 0; y < height; y++) widen_row_in_place(target + (size_t)y * row_samples, row_samples);
    }
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->samples = target;
    return 0;
}

int cic_decode_png(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels,
                   uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size) {
    return png_decode_impl(data, size, max_side, max_pixels, 0, buffer, buffer_count, out, error, error_size);
}

int cic_probe_png(const uint8_t *data, size_t size, CICImage *out, char *error, size_t error_size) {
    return png_decode_impl(data, size, INT32_MAX, 0, 1, NULL, 0, out, error, error_size);
}

int cic_encode_png(const uint16_t *samples, int32_t width, int32_t height, int32_t channels,
                   int32_t bit_depth, int32_t compression, int32_t interlace,
                   uint8_t **out, size_t *out_size, char *error, size_t error_size) {
    *out = NULL;
    *out_size = 0;
    if (width < 1 || height < 1 || channels < 1 || channels > 4 || (bit_depth != 8 && bit_depth != 16)) {
        set_error(error, error_size, "cannot encode a %dx%d PNG with %d channels at %d bits",
                  (int)width, (int)height, (int)channels, (int)bit_depth);
        return 1;
    }
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    mem_buffer buffer = {NULL, 0, 0};
    png_context context = {NULL, 0, 0, error, error_size, &buffer};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, png_error_fn, png_warning_fn);
    if (png == NULL) {
        set_error(error, error_size, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        set_error(error, error_size, "out of memory");
        return 1;
    }
    const size_t row_samples = (size_t)width * (size_t)channels;
    uint8_t *volatile narrow = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(narrow);
        free(rows);
        free(buffer.data);
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    png_set_write_fn(png, &context, png_write_fn, png_flush_fn);
    png_set_compression_level(png, compression < 0 ? 6 : (compression > 9 ? 9 : compression));
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth, color_types[channels],
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bit_depth == 16 && host_is_little_endian()) png_set_swap(png);
    if (interlace) png_set_interlace_handling(png);

    rows = malloc((size_t)height * sizeof(png_bytep));
    if (rows == NULL) png_error(png, "out of memory");
    if (bit_depth == 8) {
        narrow = malloc(row_samples * (size_t)height);
        if (narrow == NULL) png_error(png, "out of memory");
        const size_t total = row_samples * (size_t)height;
        for (size_t i = 0; i < total; i++) narrow[i] = samples[i] > 255 ? 255 : (uint8_t)samples[i];
        for (int32_t y = 0; y < height; y++) rows[y] = (png_bytep)(narrow + (size_t)y * row_samples);
    } else {
        // libpng copies each row before transforming it, so the caller's buffer is not modified.
        for (int32_t y = 0; y < height; y++) rows[y] = (png_bytep)(samples + (size_t)y * row_samples);
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(narrow);
    free(rows);
    png_destroy_write_struct(&png, &info);
    *out = buffer.data;
    *out_size = buffer.size;
    return 0;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char *error;
    size_t error_size;
} jpeg_error_context;

static void jpeg_error_exit_fn(j_common_ptr cinfo) {
    jpeg_error_context *context = (jpeg_error_context *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    set_error(context->error, context->error_size, "%s", message);
    longjmp(context->jump, 1);
}

static void jpeg_emit_message_fn(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    // libjpeg treats running out of data, or entropy data that is cut short by a marker or
    // damaged, as warnings and fills the rest with grey; for us they are errors.
    jpeg_error_context *context = (jpeg_error_context *)cinfo->err;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
        set_error(context->error, context->error_size, "file is truncated (premature end of JPEG data)");
        longjmp(context->jump, 1);
    case JWRN_HIT_MARKER:
        set_error(context->error, context->error_size, "file is truncated (premature end of JPEG data segment: a marker cuts the image data short)");
        longjmp(context->jump, 1);
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION: {
        char message[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, message);
        set_error(context->error, context->error_size, "corrupt JPEG: %s", message);
        longjmp(context->jump, 1);
    }
    default:
        cinfo->err->num_warnings++;
    }
}

// libjpeg calls this between passes; a progressive stream with thousands of tiny scans costs
// minutes of CPU for a few kilobytes (as djpeg's -maxscans guards against).
enum { JPEG_MAX_SCANS = 1000 };

static void jpeg_progress_fn(j_common_ptr cinfo) {
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_error_context *context = (jpeg_error_context *)cinfo->err;
        set_error(context->error, context->error_size, "corrupt JPEG: more than %d scans", JPEG_MAX_SCANS);
        longjmp(context->jump, 1);
    }
}

static void jpeg_output_message_fn(j_common_ptr cinfo) { (void)cinfo; }

static void install_jpeg_errors(jpeg_error_context *context, char *error, size_t error_size) {
    jpeg_std_error(&context->manager);
    context->manager.error_exit = jpeg_error_exit_fn;
    context->manager.emit_message = jpeg_emit_message_fn;
    context->manager.output_message = jpeg_output_message_fn;
    context->error = error;
    context->error_size = error_size;
}

static int jpeg_decode_impl(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels, int header_only,
                            uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size) {
    memset(out, 0, sizeof(*out));
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        set_error(error, error_size, "not a JPEG file (no start-of-image marker)");
        return 1;
    }
    struct jpeg_decompress_struct cinfo;
    jpeg_error_context errors;
    memset(&cinfo, 0, sizeof(cinfo));
    install_jpeg_errors(&errors, error, error_size);
    cinfo.err = &errors.manager;
    uint16_t *volatile samples = NULL;
    if (setjmp(errors.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(samples);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    struct jpeg_progress_mgr progress;
    memset(&progress, 0, sizeof(progress));
    progress.progress_monitor = jpeg_progress_fn;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        set_error(error, error_size, "CMYK JPEG is not supported");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    out->width = (int32_t)cinfo.image_width;
    out->height = (int32_t)cinfo.image_height;
    out->channels = cinfo.num_components == 1 ? 1 : 3;
    out->bit_depth = 8;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    if (cinfo.image_width > (JDIMENSION)max_side || cinfo.image_height > (JDIMENSION)max_side) {
        set_error(error, error_size, "image is %ux%u, above the limit of %d pixels per side",
                  (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (int)max_side);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    if (too_many_pixels(cinfo.image_width, cinfo.image_height, max_pixels)) {
        set_error(error, error_size, "image is %ux%u, above the limit of %lld pixels per image",
                  (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    // libjpeg's own working memory (progressive coefficient buffers: 2 bytes per coefficient,
    // for every component however it claims to be sampled) is capped near what a sane file of
    // this size needs; past it libjpeg stops with an error instead of allocating.
    cinfo.mem->max_memory_to_use = (long)((size_t)cinfo.image_width * cinfo.image_height * 2 * 3 + (64L << 20));
    jpeg_start_decompress(&cinfo);
    const size_t width = cinfo.output_width, height = cinfo.output_height;
    const size_t channels = (size_t)cinfo.output_components;
    const size_t row_samples = width * channels;
    if (buffer != NULL && buffer_count < row_samples * height) {
        set_error(error, error_size, "sample buffer too small for a %zux%zux%zu JPEG", width, height, channels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    uint16_t *const target = buffer != NULL ? buffer : malloc(row_samples * height * sizeof(uint16_t));
    if (buffer == NULL) samples = target;
    if (target == NULL) {
        set_error(error, error_size, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint16_t *row = target + (size_t)cinfo.output_scanline * row_samples;
        JSAMPROW target = (JSAMPROW)row;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) {
            set_error(error, error_size, "file is truncated (no more scanlines)");
            jpeg_destroy_decompress(&cinfo);
            free(samples);
            return 1;
        }
        widen_row_in_place(row, row_samples);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = (int32_t)channels;
    out->samples = target;
    return 0;
}

int cic_decode_jpeg(const uint8_t *data, size_t size, int32_t max_side, int64_t max_pixels,
                    uint16_t *buffer, size_t buffer_count, CICImage *out, char *error, size_t error_size) {
    return jpeg_decode_impl(data, size, max_side, max_pixels, 0, buffer, buffer_count, out, error, error_size);
}

int cic_probe_jpeg(const uint8_t *data, size_t size, CICImage *out, char *error, size_t error_size) {
    return jpeg_decode_impl(data, size, INT32_MAX, 0, 1, NULL, 0, out, error, error_size);
}

// A libjpeg destination manager writing into a mem_buffer we own, so that an error part-way
// through can free it (jpeg_mem_dest's own buffer would leak on longjmp).
typedef struct {
    struct jpeg_destination_mgr manager;
    mem_buffer *buffer;
} jpeg_memory_destination;

static void jpeg_dest_init(j_compress_ptr cinfo) {
    jpeg_memory_destination *dest = (jpeg_memory_destination *)cinfo->dest;
    if (!mem_reserve(dest->buffer, 65536)) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 0);
    dest->manager.next_output_byte = dest->buffer->data;
    dest->manager.free_in_buffer = dest->buffer->capacity;
}

static boolean jpeg_dest_empty(j_compress_ptr cinfo) {
    // Called when the whole buffer is full.
    jpeg_memory_destination *dest = (jpeg_memory_destination *)cinfo->dest;
    const size_t used = dest->buffer->capacity;
    if (!mem_reserve(dest->buffer, used * 2)) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
    dest->manager.next_output_byte = dest->buffer->data + used;
    dest->manager.free_in_buffer = dest->buffer->capacity - used;
    return TRUE;
}

static void jpeg_dest_term(j_compress_ptr cinfo) {
    jpeg_memory_destination *dest = (jpeg_memory_destination *)cinfo->dest;
    dest->buffer->size = dest->buffer->capacity - dest->manager.free_in_buffer;
}

int cic_encode_jpeg(const uint16_t *samples, int32_t width, int32_t height, int32_t channels,
                    int32_t quality, uint8_t **out, size_t *out_size, char *error, size_t error_size) {
    *out = NULL;
    *out_size = 0;
    if (width < 1 || height < 1 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION ||
        (channels != 1 && channels != 3)) {
        set_error(error, error_size, "cannot encode a %dx%d JPEG with %d channels (JPEG needs gray or RGB, sides up to %d)",
                  (int)width, (int)height, (int)channels, JPEG_MAX_DIMENSION);
        return 1;
    }
    if (quality < 1 || quality > 100) {
        set_error(error, error_size, "JPEG quality must be 1...100, got %d", (int)quality);
        return 1;
    }
    struct jpeg_compress_struct cinfo;
    jpeg_error_context errors;
    memset(&cinfo, 0, sizeof(cinfo));
    install_jpeg_errors(&errors, error, error_size);
    cinfo.err = &errors.manager;
    mem_buffer buffer = {NULL, 0, 0};
    jpeg_memory_destination destination;
    const size_t row_samples = (size_t)width * (size_t)channels;
    JSAMPLE *volatile row = NULL;
    if (setjmp(errors.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(row);
        free(buffer.data);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    destination.manager.init_destination = jpeg_dest_init;
    destination.manager.empty_output_buffer = jpeg_dest_empty;
    destination.manager.term_destination = jpeg_dest_term;
    destination.buffer = &buffer;
    cinfo.dest = &destination.manager;
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    row = malloc(row_samples);
    if (row == NULL) ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 2);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        const uint16_t *source = samples + (size_t)cinfo.next_scanline * row_samples;
        for (size_t i = 0; i < row_samples; i++) row[i] = source[i] > 255 ? 255 : (JSAMPLE)source[i];
        JSAMPROW pointer = (JSAMPROW)row;
        jpeg_write_scanlines(&cinfo, &pointer, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    *out = buffer.data;
    *out_size = buffer.size;
    return 0;
}
