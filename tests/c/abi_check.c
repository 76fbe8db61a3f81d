/*
 * libvlbeit's error paths and buffer conventions, from C (built and run by tests/tests/c_abi.rs).
 *
 *   abi_check BUNDLE_DIR IMAGE_PNG RAW_RGB WIDTH HEIGHT
 *
 * RAW_RGB holds the PNG's pixels as tight RGB8 rows; they are passed with a padded stride and
 * must embed exactly like the PNG. Prints one line per check, "checks N passed" at the end, and
 * exits 1 on the first failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlbeit.h"

static int checks = 0;
static int log_messages = 0;

#define CHECK(cond, what)                                                            \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "FAILED %s (line %d); last error: %s\n", what, __LINE__,       \
              vlbeit_last_error_message());                                          \
      exit(1);                                                                       \
    }                                                                                \
    checks++;                                                                        \
    printf("ok %s\n", what);                                                         \
  } while (0)

#define EXPECT_STATUS(call, want, what)                                              \
  do {                                                                               \
    vlbeit_status got_ = (call);                                                     \
    if (got_ != (want)) {                                                            \
      fprintf(stderr, "FAILED %s: got %s, want %s; last error: %s\n", what,           \
              vlbeit_status_name(got_), vlbeit_status_name(want),                     \
              vlbeit_last_error_message());                                          \
      exit(1);                                                                       \
    }                                                                                \
    checks++;                                                                        \
    printf("ok %s: %s: %s\n", what, vlbeit_status_name(got_),                         \
           got_ == VLBEIT_OK ? "" : vlbeit_last_error_message());                     \
  } while (0)

static void on_log(vlbeit_log_level level, const char *message, void *user_data) {
  (void)level;
  (void)message;
  (*(int *)user_data)++;
}

static unsigned char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *data = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n)) != NULL)
      *size = fread(data, 1, (size_t)n, f);
  }
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s BUNDLE_DIR IMAGE_PNG RAW_RGB WIDTH HEIGHT\n", argv[0]);
    return 2;
  }
  const char *bundle = argv[1];
  uint32_t width = (uint32_t)strtoul(argv[4], NULL, 10);
  uint32_t height = (uint32_t)strtoul(argv[5], NULL, 10);
  vlbeit_model *model = NULL;

  CHECK(vlbeit_abi_version() == VLBEIT_ABI_VERSION, "abi version matches the header");
  CHECK(strlen(vlbeit_version_string()) > 0, "version string");
  CHECK(strcmp(vlbeit_last_error_message(), "") == 0, "no error before any call");

  /* Before init. */
  EXPECT_STATUS(vlbeit_model_load(bundle, NULL, &model), VLBEIT_ERROR_NOT_INITIALIZED,
                "load before init");
  CHECK(model == NULL, "out_model is NULL after a failed load");

  /* Init: wrong struct_size, bad log level, then the real one with a callback. */
  vlbeit_init_params init = vlbeit_init_default_params();
  init.struct_size = 3;
  EXPECT_STATUS(vlbeit_global_init(&init), VLBEIT_ERROR_INVALID_ARGUMENT,
                "init with a wrong struct_size");
  CHECK(strstr(vlbeit_last_error_message(), "struct_size") != NULL, "message names struct_size");
  init = vlbeit_init_default_params();
  init.log_level = 42;
  EXPECT_STATUS(vlbeit_global_init(&init), VLBEIT_ERROR_INVALID_ARGUMENT, "init with log_level 42");
  init = vlbeit_init_default_params();
  init.log_level = VLBEIT_LOG_DEBUG;
  init.log_callback = on_log;
  init.log_user_data = &log_messages;
  EXPECT_STATUS(vlbeit_global_init(&init), VLBEIT_OK, "init");
  CHECK(log_messages > 0, "the log callback received the init message");

  size_t info_len = 0;
  EXPECT_STATUS(vlbeit_system_info(NULL, 0, &info_len), VLBEIT_OK, "system info size query");
  char small[4];
  EXPECT_STATUS(vlbeit_system_info(small, sizeof small, &info_len), VLBEIT_ERROR_BUFFER_TOO_SMALL,
                "system info into 4 bytes");
  char *info = malloc(info_len);
  EXPECT_STATUS(vlbeit_system_info(info, info_len, NULL), VLBEIT_OK, "system info");
  CHECK(strstr(info, "ONNX Runtime 1.") != NULL, "system info names ONNX Runtime");
  free(info);

  /* Loading: NULLs, wrong struct_size, a missing bundle, bad enum values. */
  EXPECT_STATUS(vlbeit_model_load(NULL, NULL, &model), VLBEIT_ERROR_INVALID_ARGUMENT,
                "load with a NULL path");
  EXPECT_STATUS(vlbeit_model_load(bundle, NULL, NULL), VLBEIT_ERROR_INVALID_ARGUMENT,
                "load with a NULL out_model");
  vlbeit_model_params params = vlbeit_model_default_params();
  params.struct_size = (uint32_t)sizeof(params) + 8;
  EXPECT_STATUS(vlbeit_model_load(bundle, &params, &model), VLBEIT_ERROR_INVALID_ARGUMENT,
                "load with a wrong struct_size");
  params = vlbeit_model_default_params();
  params.provider = 7;
  EXPECT_STATUS(vlbeit_model_load(bundle, &params, &model), VLBEIT_ERROR_INVALID_ARGUMENT,
                "load with provider 7");
  params = vlbeit_model_default_params();
  params.threads = 1;
  EXPECT_STATUS(vlbeit_model_load("/nonexistent/bundle", &params, &model), VLBEIT_ERROR_BUNDLE,
                "load a missing bundle");
  CHECK(strstr(vlbeit_last_error_message(), "/nonexistent/bundle") != NULL,
        "message names the missing bundle");
  EXPECT_STATUS(vlbeit_model_load(bundle, &params, &model), VLBEIT_OK, "load");

  size_t dim = 0;
  EXPECT_STATUS(vlbeit_model_embed_dim(model, &dim), VLBEIT_OK, "embed dim");
  CHECK(dim > 1 && dim <= 32, "embed dim of a tiny bundle");
  EXPECT_STATUS(vlbeit_model_embed_dim(model, NULL), VLBEIT_ERROR_INVALID_ARGUMENT,
                "embed dim into NULL");
  size_t sha_len = 0;
  EXPECT_STATUS(vlbeit_model_bundle_sha256(model, NULL, 0, &sha_len), VLBEIT_OK,
                "bundle sha256 size query");
  CHECK(sha_len == 65, "sha256 is 64 hex digits and a NUL");

  /* Embeddings: size query, too small, corrupt bytes, RGB8 with a padded stride. */
  vlbeit_image png = {0};
  png.kind = VLBEIT_IMAGE_PATH;
  png.path = argv[2];
  size_t needed = 0;
  EXPECT_STATUS(vlbeit_embed_images(model, &png, 1, NULL, 0, &needed), VLBEIT_OK,
                "embed size query");
  CHECK(needed == dim, "size query says dim floats");
  float *from_png = calloc(dim, sizeof(float));
  float *from_rgb = calloc(dim, sizeof(float));
  EXPECT_STATUS(vlbeit_embed_images(model, &png, 1, from_png, dim - 1, &needed),
                VLBEIT_ERROR_BUFFER_TOO_SMALL, "embed into dim - 1 floats");
  CHECK(needed == dim, "too-small buffer reports the needed count");
  EXPECT_STATUS(vlbeit_embed_images(model, NULL, 1, from_png, dim, NULL),
                VLBEIT_ERROR_INVALID_ARGUMENT, "embed NULL images");
  EXPECT_STATUS(vlbeit_embed_images(model, &png, 1, from_png, dim, NULL), VLBEIT_OK, "embed png");

  unsigned char corrupt[64];
  for (size_t i = 0; i < sizeof corrupt; i++) corrupt[i] = (unsigned char)(i * 37 + 11);
  memcpy(corrupt, "\x89PNG\r\n\x1a\n", 8); /* a PNG signature followed by garbage */
  vlbeit_image images[2] = {png, {0}};
  images[1].kind = VLBEIT_IMAGE_ENCODED;
  images[1].data = corrupt;
  images[1].size = sizeof corrupt;
  float two[64];
  EXPECT_STATUS(vlbeit_embed_images(model, images, 2, two, 2 * dim, NULL),
                VLBEIT_ERROR_INVALID_INPUT, "embed corrupt image bytes");
  CHECK(strstr(vlbeit_last_error_message(), "image 1") != NULL, "message names image 1");
  images[1].kind = 9;
  EXPECT_STATUS(vlbeit_embed_images(model, images, 2, two, 2 * dim, NULL),
                VLBEIT_ERROR_INVALID_ARGUMENT, "embed an image of kind 9");

  size_t raw_size = 0;
  unsigned char *raw = read_file(argv[3], &raw_size);
  CHECK(raw && raw_size == (size_t)width * height * 3, "raw RGB file");
  size_t stride = (size_t)width * 3 + 5;
  unsigned char *padded = calloc(stride * height, 1);
  for (uint32_t y = 0; y < height; y++) {
    memcpy(padded + y * stride, raw + (size_t)y * width * 3, (size_t)width * 3);
    memset(padded + y * stride + (size_t)width * 3, 0xAB, 5); /* padding the library must skip */
  }
  vlbeit_image rgb = {0};
  rgb.kind = VLBEIT_IMAGE_RGB8;
  rgb.data = padded;
  rgb.size = stride * height;
  rgb.width = width;
  rgb.height = height;
  rgb.stride = stride;
  EXPECT_STATUS(vlbeit_embed_images(model, &rgb, 1, from_rgb, dim, NULL), VLBEIT_OK,
                "embed RGB8 with a padded stride");
  double max_diff = 0.0;
  for (size_t i = 0; i < dim; i++) max_diff = fmax(max_diff, fabs(from_rgb[i] - from_png[i]));
  CHECK(max_diff == 0.0, "RGB8 pixels embed exactly like their PNG");
  rgb.stride = (size_t)width * 3 - 1;
  EXPECT_STATUS(vlbeit_embed_images(model, &rgb, 1, from_rgb, dim, NULL),
                VLBEIT_ERROR_INVALID_INPUT, "embed RGB8 with a stride below 3 * width");
  printf("png");
  for (size_t i = 0; i < dim; i++) printf(" %.6f", from_png[i]);
  printf("\n");

  /* Texts. */
  const char *texts[2] = {"a red circle", ""};
  EXPECT_STATUS(vlbeit_embed_texts(model, texts, 2, two, 2 * dim, NULL),
                VLBEIT_ERROR_INVALID_INPUT, "embed an empty text");
  CHECK(strstr(vlbeit_last_error_message(), "text 1") != NULL, "message names text 1");
  const char *not_utf8[1] = {"\xff\xfe"};
  EXPECT_STATUS(vlbeit_embed_texts(model, not_utf8, 1, two, dim, NULL),
                VLBEIT_ERROR_INVALID_ARGUMENT, "embed a text that is not UTF-8");

  /* Heads the pretrained bundle does not have. */
  float score = -1.0f;
  EXPECT_STATUS(vlbeit_match_score(model, &png, "a red circle", &score), VLBEIT_OK, "match score");
  CHECK(score >= 0.0f && score <= 1.0f, "match score is a probability");
  size_t count = 0, labels = 99;
  EXPECT_STATUS(vlbeit_model_label_count(model, VLBEIT_HEAD_VQA, &labels), VLBEIT_OK,
                "answer count");
  if (labels == 0) {
    EXPECT_STATUS(vlbeit_answer(model, &png, "what colour is the circle?", 3, NULL, 0, &count),
                  VLBEIT_ERROR_MISSING_HEAD, "answer without a VQA head");
    CHECK(strstr(vlbeit_last_error_message(), "finetune --task vqa") != NULL,
          "message says how to get a VQA head");
  }
  EXPECT_STATUS(vlbeit_model_label_count(model, VLBEIT_HEAD_CLASSIFY, &labels), VLBEIT_OK,
                "class count");
  if (labels == 0) {
    vlbeit_scored classes[1];
    EXPECT_STATUS(vlbeit_classify(model, &png, 1, classes, 1, &count), VLBEIT_ERROR_MISSING_HEAD,
                  "classify without a classification head");
  }

  /* Index misuse. */
  vlbeit_index *index = NULL;
  EXPECT_STATUS(vlbeit_index_create(model, 5, &index), VLBEIT_ERROR_INVALID_ARGUMENT,
                "index of modality 5");
  EXPECT_STATUS(vlbeit_index_create(model, VLBEIT_MODALITY_IMAGE, &index), VLBEIT_OK,
                "index create");
  vlbeit_index_entry entry = {"a.png", argv[2], NULL};
  EXPECT_STATUS(vlbeit_index_add(index, &entry, 1, from_png, dim - 1),
                VLBEIT_ERROR_INVALID_ARGUMENT, "index add with a short embedding");
  EXPECT_STATUS(vlbeit_index_add(index, &entry, 1, from_png, dim), VLBEIT_OK, "index add");
  vlbeit_hit hits[1];
  EXPECT_STATUS(vlbeit_index_search(model, index, NULL, NULL, 1, 0, hits, 1, &count),
                VLBEIT_ERROR_INVALID_ARGUMENT, "search without a query");
  EXPECT_STATUS(vlbeit_index_search(model, index, NULL, &png, 1, 0, hits, 1, &count),
                VLBEIT_ERROR_INVALID_INPUT, "image query on an image index");
  EXPECT_STATUS(vlbeit_index_search(model, index, "a red circle", NULL, 1, 1, hits, 1, &count),
                VLBEIT_OK, "search with rerank");
  CHECK(count == 1 && hits[0].reranked && strcmp(hits[0].id, "a.png") == 0, "the one hit");
  vlbeit_index *loaded = NULL;
  EXPECT_STATUS(vlbeit_index_load("/nonexistent/index.vlbidx", &loaded), VLBEIT_ERROR_IO,
                "load a missing index");
  CHECK(loaded == NULL, "out_index is NULL after a failed load");
  EXPECT_STATUS(vlbeit_index_load(argv[2], &loaded), VLBEIT_ERROR_INDEX,
                "load a PNG as an index");

  /* Handles: the wrong kind, shutdown while live, double free, stale copies. */
  EXPECT_STATUS(vlbeit_model_embed_dim((const vlbeit_model *)hits, &dim),
                VLBEIT_ERROR_INVALID_HANDLE, "a pointer that is no handle");
  vlbeit_index *index2 = NULL;
  EXPECT_STATUS(vlbeit_index_create(model, VLBEIT_MODALITY_TEXT, &index2), VLBEIT_OK,
                "second index");
  EXPECT_STATUS(vlbeit_global_shutdown(), VLBEIT_ERROR_INVALID_STATE, "shutdown with live handles");
  EXPECT_STATUS(vlbeit_index_free(&index2), VLBEIT_OK, "index free");
  CHECK(index2 == NULL, "free sets the handle to NULL");
  EXPECT_STATUS(vlbeit_index_free(&index2), VLBEIT_OK, "index free again (NULL: no-op)");
  EXPECT_STATUS(vlbeit_index_free(&index), VLBEIT_OK, "first index free");
  vlbeit_model *stale = model;
  EXPECT_STATUS(vlbeit_model_free(&model), VLBEIT_OK, "model free");
  EXPECT_STATUS(vlbeit_model_free(&model), VLBEIT_OK, "model free again (NULL: no-op)");
  EXPECT_STATUS(vlbeit_model_free(&stale), VLBEIT_ERROR_INVALID_HANDLE,
                "free a stale copy of a freed model");
  EXPECT_STATUS(vlbeit_model_embed_dim(stale, &dim), VLBEIT_ERROR_INVALID_HANDLE,
                "use a freed model");
  EXPECT_STATUS(vlbeit_model_free(NULL), VLBEIT_OK, "free(NULL)");

  free(padded);
  free(raw);
  free(from_rgb);
  free(from_png);
  EXPECT_STATUS(vlbeit_global_shutdown(), VLBEIT_OK, "shutdown");
  EXPECT_STATUS(vlbeit_model_embed_dim(NULL, &dim), VLBEIT_ERROR_INVALID_ARGUMENT,
                "calls after shutdown still check their arguments");
  printf("checks %d passed\n", checks);
  return 0;
}
