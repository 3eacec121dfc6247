/* JPEG decoding exactly as Pillow's JpegDecode.c drives libjpeg-turbo (Pillow 11), for LlavaInterp's image decoder.
 *
 * Why a shim: Skia's bundled libjpeg-turbo is built without SIMD. On valid files that makes no difference (the C and
 * SIMD ISLOW IDCTs agree), but on corrupt data whose coefficients overflow 16 bits they do not, and Pillow on x86-64
 * always runs the SIMD code. Skia also never calls jpeg_finish_decompress, so an unknown marker or a second SOS after
 * the image data (an error in Pillow) goes unnoticed. Linking libjpeg-turbo with its SIMD code and making Pillow's
 * calls in Pillow's order gives Pillow's pixels and Pillow's errors on every file.
 *
 * The calls: jpeg_read_header; out_color_space from the mode PIL chose from the frame header (L, RGB, or CMYK read as
 * "CMYK;I"); jpeg_start_decompress; one jpeg_read_scanlines per row; jpeg_finish_decompress, whose suspension
 * (no EOI) is accepted once every row is read. The source is the whole file; running out of data is suspension.
 * Warnings are ignored (Pillow's output_message is empty); errors return their libjpeg message.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    LI_JPEG_OK = 0,
    LI_JPEG_ERROR = 1,     /* libjpeg raised an error: message holds its text */
    LI_JPEG_TRUNCATED = 2, /* the data ended before the last row */
    LI_JPEG_BAD_ARGS = 3,
};

struct li_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
};

static void li_error_exit(j_common_ptr cinfo) {
    longjmp(((struct li_error *)cinfo->err)->jump, 1);
}

static void li_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void li_init_source(j_decompress_ptr cinfo) { (void)cinfo; }

/* The whole file is in the buffer: asking for more is the suspension Pillow sees at the end of the file. */
static boolean li_fill_input_buffer(j_decompress_ptr cinfo) {
    (void)cinfo;
    return FALSE;
}

static void li_skip_input_data(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0) {
        return;
    }
    if ((size_t)count > src->bytes_in_buffer) {
        /* Skipping past the end: leave nothing, so the next read suspends. */
        src->next_input_byte += src->bytes_in_buffer;
        src->bytes_in_buffer = 0;
        return;
    }
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}

static void li_term_source(j_decompress_ptr cinfo) { (void)cinfo; }

static void li_message(j_common_ptr cinfo, char *message, int capacity) {
    char text[JMSG_LENGTH_MAX];
    if (message == NULL || capacity <= 0) {
        return;
    }
    cinfo->err->format_message(cinfo, text);
    snprintf(message, (size_t)capacity, "%s", text);
}

/* Creates the decompressor over the whole file (the error manager is set and its jump armed before). */
static void li_create(j_decompress_ptr cinfo, struct jpeg_source_mgr *src, const unsigned char *data, size_t length) {
    jpeg_create_decompress(cinfo);
    src->next_input_byte = data;
    src->bytes_in_buffer = length;
    src->init_source = li_init_source;
    src->fill_input_buffer = li_fill_input_buffer;
    src->skip_input_data = li_skip_input_data;
    src->resync_to_restart = jpeg_resync_to_restart;
    src->term_source = li_term_source;
    cinfo->src = src;
}

/* Pillow's error manager: errors jump back, warnings are dropped. */
static void li_errors(j_decompress_ptr cinfo, struct li_error *err) {
    memset(cinfo, 0, sizeof *cinfo);
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = li_error_exit;
    err->pub.output_message = li_output_message;
}

/* Reads the header only: width, height and components of the frame, before any pixel memory exists. */
EXPORT int li_jpeg_header(const unsigned char *data, size_t length, int *width, int *height, int *components,
                          char *message, int capacity) {
    struct jpeg_decompress_struct cinfo;
    struct li_error err;
    struct jpeg_source_mgr src;
    int status;

    if (data == NULL || width == NULL || height == NULL || components == NULL) {
        return LI_JPEG_BAD_ARGS;
    }
    li_errors(&cinfo, &err);
    if (setjmp(err.jump)) {
        li_message((j_common_ptr)&cinfo, message, capacity);
        jpeg_destroy_decompress(&cinfo);
        return LI_JPEG_ERROR;
    }
    li_create(&cinfo, &src, data, length);
    status = jpeg_read_header(&cinfo, FALSE) == JPEG_SUSPENDED ? LI_JPEG_TRUNCATED : LI_JPEG_OK;
    if (status == LI_JPEG_OK) {
        *width = (int)cinfo.image_width;
        *height = (int)cinfo.image_height;
        *components = cinfo.num_components;
    }
    jpeg_destroy_decompress(&cinfo);
    return status;
}

/* Decodes into pixels (width * height * bands bytes; bands 1 = L, 3 = RGB, 4 = CMYK as stored, not inverted). */
EXPORT int li_jpeg_decode(const unsigned char *data, size_t length, int bands, unsigned char *pixels,
                          size_t pixels_length, char *message, int capacity) {
    struct jpeg_decompress_struct cinfo;
    struct li_error err;
    struct jpeg_source_mgr src;
    volatile int status = LI_JPEG_OK;
    JSAMPROW row;
    size_t stride;

    if (data == NULL || pixels == NULL || (bands != 1 && bands != 3 && bands != 4)) {
        return LI_JPEG_BAD_ARGS;
    }
    li_errors(&cinfo, &err);
    if (setjmp(err.jump)) {
        li_message((j_common_ptr)&cinfo, message, capacity);
        jpeg_destroy_decompress(&cinfo);
        return LI_JPEG_ERROR;
    }
    li_create(&cinfo, &src, data, length);

    if (jpeg_read_header(&cinfo, FALSE) == JPEG_SUSPENDED) {
        jpeg_destroy_decompress(&cinfo);
        return LI_JPEG_TRUNCATED;
    }
    cinfo.out_color_space = bands == 1 ? JCS_GRAYSCALE : bands == 3 ? JCS_RGB : JCS_CMYK;
    if (!jpeg_start_decompress(&cinfo)) {
        jpeg_destroy_decompress(&cinfo);
        return LI_JPEG_TRUNCATED;
    }
    stride = (size_t)cinfo.output_width * (size_t)bands;
    if (cinfo.output_components != bands || stride * cinfo.output_height != pixels_length) {
        jpeg_destroy_decompress(&cinfo);
        return LI_JPEG_BAD_ARGS;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        row = pixels + stride * cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            status = LI_JPEG_TRUNCATED;
            break;
        }
    }
    if (status == LI_JPEG_OK) {
        /* A suspension here (no EOI) is fine: Pillow keeps the image once every row is in. */
        (void)jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo);
    return status;
}
