// The C++ wrapper (bindings/cpp/vlbeit.hpp): image–text matching, embeddings and a text index
// of the captions searched by the image, with errors as exceptions.
//
//   match BUNDLE_DIR IMAGE_FILE "TEXT"...
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "vlbeit.hpp"

int main(int argc, char **argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s BUNDLE_DIR IMAGE_FILE TEXT...\n", argv[0]);
    return 2;
  }
  try {
    vlbeit::Library library;
    vlbeit_model_params params = vlbeit_model_default_params();
    params.threads = 1;
    vlbeit::Model model(argv[1], &params);
    const vlbeit_image image = vlbeit::image_path(argv[2]);
    std::vector<std::string> texts(argv + 3, argv + argc);

    const std::size_t dim = model.embed_dim();
    const std::vector<float> image_embedding = model.embed_images({image});
    const std::vector<float> text_embeddings = model.embed_texts(texts);
    vlbeit::Index captions(model, VLBEIT_MODALITY_TEXT);
    std::vector<vlbeit::Entry> entries;
    for (std::size_t i = 0; i < texts.size(); i++) {
      double cosine = 0.0;
      for (std::size_t j = 0; j < dim; j++)
        cosine += double(image_embedding[j]) * double(text_embeddings[i * dim + j]);
      std::printf("text %zu cosine=%.6f match=%.6f %s\n", i, cosine,
                  model.match_score(image, texts[i]), texts[i].c_str());
      entries.push_back({texts[i], texts[i], std::nullopt});
    }
    captions.add(entries, text_embeddings);
    for (const auto &hit : captions.search(model, image, texts.size(), 1))
      std::printf("caption %s similarity=%.6f reranked=%d\n", hit.id.c_str(), hit.similarity,
                  hit.match_score ? 1 : 0);
    try {
      model.classify(image, 1);
      std::printf("classify: ok\n");
    } catch (const vlbeit::Error &e) {
      std::printf("classify: %s\n", vlbeit_status_name(e.status()));
    }
  } catch (const vlbeit::Error &e) {
    std::fprintf(stderr, "match: %s\n", e.what());
    return 1;
  }
  return 0;
}
