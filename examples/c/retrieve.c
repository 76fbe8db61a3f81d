/*
 * Indexes a folder of images with libvlbeit and answers a text query: dual-encoder top-k over
 * the index, then fusion-encoder rerank of the best candidates.
 *
 *   retrieve BUNDLE_DIR IMAGE_DIR "QUERY" [TOP_K [RERANK_K [INDEX_FILE]]]
 *
 * With INDEX_FILE the index is saved there, freed, loaded back and searched, as an
 * application that indexes once and serves later would do.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlbeit.h"

static int fail(const char *what, vlbeit_status status) {
  fprintf(stderr, "retrieve: %s failed: %s: %s\n", what, vlbeit_status_name(status),
          vlbeit_last_error_message());
  return 1;
}

static int is_image(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcmp(dot, ".png") || !strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg") ||
                 !strcmp(dot, ".webp"));
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The image files of `dir`, sorted by name; the caller frees each name and the array. */
static char **list_images(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) return NULL;
  size_t n = 0, cap = 16;
  char **names = malloc(cap * sizeof *names);
  struct dirent *e;
  while (names && (e = readdir(d)) != NULL) {
    if (!is_image(e->d_name)) continue;
    if (n == cap) {
      char **grown = realloc(names, (cap *= 2) * sizeof *names);
      if (!grown) break;
      names = grown;
    }
    names[n] = malloc(strlen(e->d_name) + 1);
    if (!names[n]) break;
    strcpy(names[n++], e->d_name);
  }
  closedir(d);
  if (names) qsort(names, n, sizeof *names, by_name);
  *count = n;
  return names;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s BUNDLE_DIR IMAGE_DIR QUERY [TOP_K [RERANK_K [INDEX_FILE]]]\n",
            argv[0]);
    return 2;
  }
  const char *bundle = argv[1], *image_dir = argv[2], *query = argv[3];
  size_t top_k = argc > 4 ? strtoul(argv[4], NULL, 10) : 5;
  size_t rerank_k = argc > 5 ? strtoul(argv[5], NULL, 10) : 3;
  const char *index_file = argc > 6 ? argv[6] : NULL;
  int rc = 1;
  vlbeit_status status;
  vlbeit_model *model = NULL;
  vlbeit_index *index = NULL;
  vlbeit_image *images = NULL;
  vlbeit_index_entry *entries = NULL;
  char **paths = NULL;
  float *embeddings = NULL;
  vlbeit_hit *hits = NULL;

  size_t count = 0;
  char **names = list_images(image_dir, &count);
  if (!names || count == 0) {
    fprintf(stderr, "retrieve: no .png/.jpg/.webp images in %s\n", image_dir);
    goto out_names;
  }

  if ((status = vlbeit_global_init(NULL)) != VLBEIT_OK) {
    rc = fail("vlbeit_global_init", status);
    goto out_names;
  }
  vlbeit_model_params params = vlbeit_model_default_params();
  params.threads = 1;
  if ((status = vlbeit_model_load(bundle, &params, &model)) != VLBEIT_OK) {
    rc = fail("vlbeit_model_load", status);
    goto out;
  }

  images = calloc(count, sizeof *images);
  entries = calloc(count, sizeof *entries);
  paths = calloc(count, sizeof *paths);
  if (!images || !entries || !paths) goto out;
  for (size_t i = 0; i < count; i++) {
    char joined[PATH_MAX];
    snprintf(joined, sizeof joined, "%s/%s", image_dir, names[i]);
    /* Absolute sources: rerank finds the files wherever the index file is loaded from. */
    paths[i] = realpath(joined, NULL);
    if (!paths[i]) {
      fprintf(stderr, "retrieve: cannot resolve %s\n", joined);
      goto out;
    }
    images[i].kind = VLBEIT_IMAGE_PATH;
    images[i].path = paths[i];
    entries[i].id = names[i];
    entries[i].source = paths[i];
  }

  /* Size query first: the library says how many floats the embeddings need. */
  size_t needed = 0;
  if ((status = vlbeit_embed_images(model, images, count, NULL, 0, &needed)) != VLBEIT_OK) {
    rc = fail("vlbeit_embed_images (size query)", status);
    goto out;
  }
  embeddings = malloc(needed * sizeof *embeddings);
  if (!embeddings) goto out;
  if ((status = vlbeit_embed_images(model, images, count, embeddings, needed, NULL)) !=
      VLBEIT_OK) {
    rc = fail("vlbeit_embed_images", status);
    goto out;
  }
  if ((status = vlbeit_index_create(model, VLBEIT_MODALITY_IMAGE, &index)) != VLBEIT_OK) {
    rc = fail("vlbeit_index_create", status);
    goto out;
  }
  if ((status = vlbeit_index_add(index, entries, count, embeddings, needed)) != VLBEIT_OK) {
    rc = fail("vlbeit_index_add", status);
    goto out;
  }
  size_t dim = 0;
  vlbeit_index_size(index, &count, &dim);
  printf("indexed %zu images (dim %zu)\n", count, dim);

  if (index_file) {
    if ((status = vlbeit_index_save(index, index_file)) != VLBEIT_OK) {
      rc = fail("vlbeit_index_save", status);
      goto out;
    }
    vlbeit_index_free(&index);
    if ((status = vlbeit_index_load(index_file, &index)) != VLBEIT_OK) {
      rc = fail("vlbeit_index_load", status);
      goto out;
    }
  }

  size_t hit_count = 0;
  vlbeit_index_search(model, index, query, NULL, top_k, rerank_k, NULL, 0, &hit_count);
  hits = calloc(hit_count ? hit_count : 1, sizeof *hits);
  if (!hits) goto out;
  if ((status = vlbeit_index_search(model, index, query, NULL, top_k, rerank_k, hits, hit_count,
                                    &hit_count)) != VLBEIT_OK) {
    rc = fail("vlbeit_index_search", status);
    goto out;
  }
  printf("query \"%s\" top_k %zu rerank_k %zu\n", query, top_k, rerank_k);
  for (size_t i = 0; i < hit_count; i++) {
    printf("hit %zu %s similarity=%.6f match=%.6f reranked=%d dual_rank=%zu\n", i, hits[i].id,
           hits[i].similarity, hits[i].match_score, hits[i].reranked ? 1 : 0,
           hits[i].dual_rank);
  }
  rc = 0;

out:
  free(hits);
  free(embeddings);
  if (paths)
    for (size_t i = 0; i < count; i++) free(paths[i]);
  free(paths);
  free(entries);
  free(images);
  vlbeit_index_free(&index);
  vlbeit_model_free(&model);
  if ((status = vlbeit_global_shutdown()) != VLBEIT_OK) rc = fail("vlbeit_global_shutdown", status);
out_names:
  if (names)
    for (size_t i = 0; i < count; i++) free(names[i]);
  free(names);
  return rc;
}
