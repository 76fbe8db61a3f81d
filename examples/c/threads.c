/*
 * One worker per thread on a shared model: a vlbeit_model is safe to share, and up to
 * `pool_size` calls run each graph at once. Every thread embeds the same images and texts;
 * the program checks that all threads got the same vectors and prints the first ones.
 *
 *   threads BUNDLE_DIR THREADS "TEXT" IMAGE_FILE...
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlbeit.h"

struct worker {
  const vlbeit_model *model;
  const vlbeit_image *images;
  size_t image_count;
  const char *text;
  float *image_embeddings; /* image_count * dim */
  float *text_embedding;   /* dim */
  size_t dim;
  vlbeit_status status;
  char error[512];
};

static void *work(void *arg) {
  struct worker *w = arg;
  w->status = vlbeit_embed_images(w->model, w->images, w->image_count, w->image_embeddings,
                                  w->image_count * w->dim, NULL);
  if (w->status == VLBEIT_OK) {
    w->status = vlbeit_embed_texts(w->model, &w->text, 1, w->text_embedding, w->dim, NULL);
  }
  if (w->status != VLBEIT_OK) {
    /* The message is thread-local: read it on the thread that failed. */
    snprintf(w->error, sizeof w->error, "%s", vlbeit_last_error_message());
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s BUNDLE_DIR THREADS TEXT IMAGE_FILE...\n", argv[0]);
    return 2;
  }
  size_t threads = strtoul(argv[2], NULL, 10);
  size_t image_count = (size_t)argc - 4;
  if (threads == 0 || threads > 64) {
    fprintf(stderr, "threads: THREADS must be 1..64\n");
    return 2;
  }
  int rc = 1;
  vlbeit_model *model = NULL;
  vlbeit_status status = vlbeit_global_init(NULL);
  if (status != VLBEIT_OK) {
    fprintf(stderr, "threads: %s: %s\n", vlbeit_status_name(status), vlbeit_last_error_message());
    return 1;
  }
  vlbeit_model_params params = vlbeit_model_default_params();
  params.threads = 1;
  params.pool_size = (uint32_t)threads; /* one session per worker: no waiting */
  status = vlbeit_model_load(argv[1], &params, &model);
  size_t dim = 0;
  if (status == VLBEIT_OK) status = vlbeit_model_embed_dim(model, &dim);
  if (status != VLBEIT_OK) {
    fprintf(stderr, "threads: %s: %s\n", vlbeit_status_name(status), vlbeit_last_error_message());
    goto out;
  }

  vlbeit_image *images = calloc(image_count, sizeof *images);
  struct worker *workers = calloc(threads, sizeof *workers);
  pthread_t *ids = calloc(threads, sizeof *ids);
  if (!images || !workers || !ids) goto out_free;
  for (size_t i = 0; i < image_count; i++) {
    images[i].kind = VLBEIT_IMAGE_PATH;
    images[i].path = argv[4 + i];
  }
  for (size_t t = 0; t < threads; t++) {
    struct worker *w = &workers[t];
    w->model = model;
    w->images = images;
    w->image_count = image_count;
    w->text = argv[3];
    w->dim = dim;
    w->image_embeddings = calloc(image_count * dim, sizeof(float));
    w->text_embedding = calloc(dim, sizeof(float));
    if (!w->image_embeddings || !w->text_embedding) goto out_free;
  }
  for (size_t t = 0; t < threads; t++) pthread_create(&ids[t], NULL, work, &workers[t]);
  for (size_t t = 0; t < threads; t++) pthread_join(ids[t], NULL);

  double max_diff = 0.0;
  int failed = 0;
  for (size_t t = 0; t < threads; t++) {
    if (workers[t].status != VLBEIT_OK) {
      fprintf(stderr, "thread %zu: %s: %s\n", t, vlbeit_status_name(workers[t].status),
              workers[t].error);
      failed = 1;
      continue;
    }
    for (size_t i = 0; i < image_count * dim; i++)
      max_diff = fmax(max_diff, fabs(workers[t].image_embeddings[i] - workers[0].image_embeddings[i]));
    for (size_t i = 0; i < dim; i++)
      max_diff = fmax(max_diff, fabs(workers[t].text_embedding[i] - workers[0].text_embedding[i]));
  }
  if (!failed) {
    printf("threads %zu images %zu dim %zu max_diff %.3g\n", threads, image_count, dim, max_diff);
    for (size_t i = 0; i < image_count; i++) {
      printf("image %zu", i);
      for (size_t j = 0; j < dim; j++) printf(" %.6f", workers[0].image_embeddings[i * dim + j]);
      printf("\n");
    }
    printf("text");
    for (size_t j = 0; j < dim; j++) printf(" %.6f", workers[0].text_embedding[j]);
    printf("\n");
    rc = max_diff == 0.0 ? 0 : 1;
  }

out_free:
  if (workers)
    for (size_t t = 0; t < threads; t++) {
      free(workers[t].image_embeddings);
      free(workers[t].text_embedding);
    }
  free(ids);
  free(workers);
  free(images);
out:
  vlbeit_model_free(&model);
  vlbeit_global_shutdown();
  return rc;
}
