/*
 * Answers a question about an image with libvlbeit's VQA head.
 *
 *   answer BUNDLE_DIR IMAGE_FILE "QUESTION" [TOP_K]
 *
 * A bundle exported from a checkpoint without a VQA head (e.g. the pretrained model) has no
 * answers to give: the program prints the library's error, which says how to get one, and
 * exits with status 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "vlbeit.h"

static int fail(const char *what, vlbeit_status status) {
  fprintf(stderr, "answer: %s failed: %s: %s\n", what, vlbeit_status_name(status),
          vlbeit_last_error_message());
  return 1;
}

/* The whole file in memory (the image is passed as encoded bytes); NULL on failure. */
static unsigned char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *data = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n)) != NULL) {
      *size = fread(data, 1, (size_t)n, f);
    }
  }
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s BUNDLE_DIR IMAGE_FILE QUESTION [TOP_K]\n", argv[0]);
    return 2;
  }
  size_t top_k = argc > 4 ? strtoul(argv[4], NULL, 10) : 3;
  size_t size = 0;
  unsigned char *bytes = read_file(argv[2], &size);
  if (!bytes) {
    fprintf(stderr, "answer: cannot read %s\n", argv[2]);
    return 1;
  }
  int rc = 1;
  vlbeit_status status;
  vlbeit_model *model = NULL;
  vlbeit_scored *answers = NULL;
  if ((status = vlbeit_global_init(NULL)) != VLBEIT_OK) {
    rc = fail("vlbeit_global_init", status);
    goto out_bytes;
  }
  vlbeit_model_params params = vlbeit_model_default_params();
  params.threads = 1;
  if ((status = vlbeit_model_load(argv[1], &params, &model)) != VLBEIT_OK) {
    rc = fail("vlbeit_model_load", status);
    goto out;
  }
  vlbeit_image image = {0};
  image.kind = VLBEIT_IMAGE_ENCODED;
  image.data = bytes;
  image.size = size;

  size_t count = 0;
  if ((status = vlbeit_answer(model, &image, argv[3], top_k, NULL, 0, &count)) != VLBEIT_OK) {
    rc = fail("vlbeit_answer", status);
    goto out;
  }
  answers = calloc(count ? count : 1, sizeof *answers);
  if (!answers) goto out;
  if ((status = vlbeit_answer(model, &image, argv[3], top_k, answers, count, &count)) !=
      VLBEIT_OK) {
    rc = fail("vlbeit_answer", status);
    goto out;
  }
  printf("question \"%s\"\n", argv[3]);
  for (size_t i = 0; i < count; i++) {
    printf("answer %zu %s score=%.6f\n", i, answers[i].label, answers[i].score);
  }
  rc = 0;
out:
  free(answers);
  vlbeit_model_free(&model);
  vlbeit_global_shutdown();
out_bytes:
  free(bytes);
  return rc;
}
