/* SPDX-License-Identifier: MIT */
/*
 * img.h - images: file -> RGB u8 (PIL's Image.open(p).convert("RGB")), then
 * HF CLIPProcessor preprocessing (PIL bicubic resize of the shortest edge,
 * centre crop, /255, (x-mean)/std, NCHW float), plus JPEG/PNG writing and a
 * simple display scaler. Contracts are in img.c above each definition.
 */
#ifndef PS_IMG_H
#define PS_IMG_H

#include <stddef.h>
#include <stdint.h>

/* Decoded images larger than this many pixels are refused before any allocation. */
#define IMG_MAX_PIXELS (1L << 28)

typedef struct Image {
    int w, h;
    uint8_t *rgb; /* (h, w, 3), malloc'd, owned; img_free */
} Image;

/* HF CLIPImageProcessor settings; img_prep_clip() gives openai/clip-vit-base-patch16's. */
typedef struct ImgPrep {
    int size;        /* shortest edge after the resize (HF size.shortest_edge) */
    int crop;        /* side of the centre crop (HF crop_size) */
    float mean[3];   /* per channel, on the 0..1 scale */
    float std[3];
} ImgPrep;

enum { IMG_NEAREST = 0, IMG_BILINEAR = 1 };

/* Decodes the file at path (JPEG, PNG; GIF, BMP, PNM through libsixel); type from magic bytes. */
int img_load(Image *im, const char *path, char *err);
/* Same from n bytes in memory (GIF/BMP/PNM go through a temporary file). */
int img_decode_mem(Image *im, const void *buf, size_t n, char *err);
/* Grey (h, w) u8 -> RGB by replication (IDX datasets). */
int img_from_gray(Image *im, const uint8_t *gray, int w, int h, char *err);
/* Frees im->rgb and zeroes *im; NULL and a second call are fine. */
void img_free(Image *im);
/* "png", "jpeg", "gif", "bmp", "pnm" or NULL, from the first bytes. */
const char *img_sniff(const void *buf, size_t n);

/* CLIP ViT-B/16 defaults: size 224, crop 224, OpenAI mean/std. */
ImgPrep img_prep_clip(void);
/* HF get_resize_output_image_size(default_to_square=False): short side -> size, long truncated. */
void img_resize_dims(int w, int h, int size, int *ow, int *oh);
/* Resize (PIL bicubic, bit-exact) + centre crop: out (crop, crop, 3) u8, zero padded like HF. */
int img_resize_crop_u8(const Image *im, const ImgPrep *p, uint8_t *out, char *err);
/* (crop, crop, 3) u8 -> (3, crop, crop) float: x/255, then (x-mean)/std. */
void img_normalize(const uint8_t *crop_rgb, const ImgPrep *p, float *out);
/* img_resize_crop_u8 then img_normalize: out (3, crop, crop), CLIPProcessor's pixel_values[0]. */
int img_preprocess(const Image *im, const ImgPrep *p, float *out, char *err);

/* JPEG of (h, w, 3) RGB at quality 1..100, 4:2:0; *out malloc'd (free()), *n its length. */
int img_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, unsigned char **out, size_t *n,
                    char *err);
/* Writes (h, w, 3) RGB as an 8-bit PNG file. */
int img_save_png(const char *path, const uint8_t *rgb, int w, int h, char *err);
/* Display scaling (not for the model): (sh, sw, 3) -> (dh, dw, 3), IMG_NEAREST or IMG_BILINEAR. */
void img_resize_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, int mode);

#endif
