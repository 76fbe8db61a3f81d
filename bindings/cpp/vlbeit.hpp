// vlbeit.hpp: header-only C++17 wrapper over libvlbeit's C ABI (include/vlbeit.h).
//
// RAII handles (Library, Model, Index: movable, not copyable), exceptions (vlbeit::Error with
// the vlbeit_status and the library's message), std::vector / std::string outputs. The
// thread-safety of the C functions carries over: a Model and an Index may be shared between
// threads (const member functions).
#ifndef VLBEIT_HPP
#define VLBEIT_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vlbeit.h"

namespace vlbeit {

// A failed libvlbeit call: its status and the library's message.
class Error : public std::runtime_error {
 public:
  Error(vlbeit_status status, const std::string &message)
      : std::runtime_error(std::string(vlbeit_status_name(status)) + ": " + message),
        status_(status) {}
  vlbeit_status status() const noexcept { return status_; }

 private:
  vlbeit_status status_;
};

// Throws vlbeit::Error unless `status` is VLBEIT_OK.
inline void check(vlbeit_status status) {
  if (status != VLBEIT_OK) throw Error(status, vlbeit_last_error_message());
}

// Images are only read during a call: these views borrow the caller's memory.
inline vlbeit_image image_path(const char *path) {
  vlbeit_image image{};
  image.kind = VLBEIT_IMAGE_PATH;
  image.path = path;
  return image;
}

inline vlbeit_image image_encoded(const std::uint8_t *data, std::size_t size) {
  vlbeit_image image{};
  image.kind = VLBEIT_IMAGE_ENCODED;
  image.data = data;
  image.size = size;
  return image;
}

inline vlbeit_image image_rgb8(const std::uint8_t *data, std::size_t size, std::uint32_t width,
                               std::uint32_t height, std::size_t stride = 0) {
  vlbeit_image image{};
  image.kind = VLBEIT_IMAGE_RGB8;
  image.data = data;
  image.size = size;
  image.width = width;
  image.height = height;
  image.stride = stride;
  return image;
}

// vlbeit_global_init for the lifetime of the object (create one, first; destroy it last).
class Library {
 public:
  explicit Library(const vlbeit_init_params *params = nullptr) {
    check(vlbeit_global_init(params));
  }
  ~Library() { vlbeit_global_shutdown(); }
  Library(const Library &) = delete;
  Library &operator=(const Library &) = delete;

  static std::string system_info() {
    std::size_t len = 0;
    check(vlbeit_system_info(nullptr, 0, &len));
    std::string text(len, '\0');
    check(vlbeit_system_info(text.data(), text.size(), &len));
    text.resize(len - 1);
    return text;
  }
};

struct Scored {
  std::size_t index;
  float score;
  std::string label;
};

struct Hit {
  std::size_t entry;
  std::string id;
  std::optional<std::string> metadata;
  float similarity;
  std::optional<float> match_score;  // set for reranked hits
  std::size_t dual_rank;
};

class Model {
 public:
  explicit Model(const std::string &bundle_dir, const vlbeit_model_params *params = nullptr) {
    check(vlbeit_model_load(bundle_dir.c_str(), params, &model_));
  }
  ~Model() { vlbeit_model_free(&model_); }
  Model(Model &&other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
  Model &operator=(Model &&other) noexcept {
    if (this != &other) {
      vlbeit_model_free(&model_);
      model_ = std::exchange(other.model_, nullptr);
    }
    return *this;
  }
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  const vlbeit_model *get() const noexcept { return model_; }

  std::size_t embed_dim() const {
    std::size_t dim = 0;
    check(vlbeit_model_embed_dim(model_, &dim));
    return dim;
  }

  // Row-major [images.size(), embed_dim()].
  std::vector<float> embed_images(const std::vector<vlbeit_image> &images) const {
    std::size_t needed = 0;
    check(vlbeit_embed_images(model_, images.data(), images.size(), nullptr, 0, &needed));
    std::vector<float> out(needed);
    check(vlbeit_embed_images(model_, images.data(), images.size(), out.data(), out.size(),
                              nullptr));
    return out;
  }

  std::vector<float> embed_texts(const std::vector<std::string> &texts) const {
    std::vector<const char *> pointers;
    pointers.reserve(texts.size());
    for (const auto &text : texts) pointers.push_back(text.c_str());
    std::size_t needed = 0;
    check(vlbeit_embed_texts(model_, pointers.data(), pointers.size(), nullptr, 0, &needed));
    std::vector<float> out(needed);
    check(vlbeit_embed_texts(model_, pointers.data(), pointers.size(), out.data(), out.size(),
                             nullptr));
    return out;
  }

  float match_score(const vlbeit_image &image, const std::string &text) const {
    float score = 0.0f;
    check(vlbeit_match_score(model_, &image, text.c_str(), &score));
    return score;
  }

  std::vector<Scored> answer(const vlbeit_image &image, const std::string &question,
                             std::size_t top_k) const {
    std::size_t count = 0;
    check(vlbeit_answer(model_, &image, question.c_str(), top_k, nullptr, 0, &count));
    std::vector<vlbeit_scored> raw(count);
    check(vlbeit_answer(model_, &image, question.c_str(), top_k, raw.data(), raw.size(), &count));
    return scored(raw, count);
  }

  std::vector<Scored> classify(const vlbeit_image &image, std::size_t top_k) const {
    std::size_t count = 0;
    check(vlbeit_classify(model_, &image, top_k, nullptr, 0, &count));
    std::vector<vlbeit_scored> raw(count);
    check(vlbeit_classify(model_, &image, top_k, raw.data(), raw.size(), &count));
    return scored(raw, count);
  }

 private:
  static std::vector<Scored> scored(const std::vector<vlbeit_scored> &raw, std::size_t count) {
    std::vector<Scored> out;
    for (std::size_t i = 0; i < count && i < raw.size(); i++)
      out.push_back({raw[i].index, raw[i].score, raw[i].label ? raw[i].label : ""});
    return out;
  }

  vlbeit_model *model_ = nullptr;
};

struct Entry {
  std::string id;
  std::optional<std::string> source;
  std::optional<std::string> metadata;
};

class Index {
 public:
  Index(const Model &model, vlbeit_modality modality) {
    check(vlbeit_index_create(model.get(), modality, &index_));
  }
  static Index load(const std::string &path) {
    vlbeit_index *raw = nullptr;
    check(vlbeit_index_load(path.c_str(), &raw));
    return Index(raw);
  }
  ~Index() { vlbeit_index_free(&index_); }
  Index(Index &&other) noexcept : index_(std::exchange(other.index_, nullptr)) {}
  Index &operator=(Index &&other) noexcept {
    if (this != &other) {
      vlbeit_index_free(&index_);
      index_ = std::exchange(other.index_, nullptr);
    }
    return *this;
  }
  Index(const Index &) = delete;
  Index &operator=(const Index &) = delete;

  void add(const std::vector<Entry> &entries, const std::vector<float> &embeddings) {
    std::vector<vlbeit_index_entry> raw;
    raw.reserve(entries.size());
    for (const auto &e : entries)
      raw.push_back({e.id.c_str(), e.source ? e.source->c_str() : nullptr,
                     e.metadata ? e.metadata->c_str() : nullptr});
    check(vlbeit_index_add(index_, raw.data(), raw.size(), embeddings.data(), embeddings.size()));
  }

  std::size_t size() const {
    std::size_t count = 0;
    check(vlbeit_index_size(index_, &count, nullptr));
    return count;
  }

  void save(const std::string &path) const { check(vlbeit_index_save(index_, path.c_str())); }

  std::vector<Hit> search(const Model &model, const std::string &text, std::size_t top_k,
                          std::size_t rerank_k) const {
    return search(model, text.c_str(), nullptr, top_k, rerank_k);
  }

  std::vector<Hit> search(const Model &model, const vlbeit_image &image, std::size_t top_k,
                          std::size_t rerank_k) const {
    return search(model, nullptr, &image, top_k, rerank_k);
  }

 private:
  explicit Index(vlbeit_index *raw) : index_(raw) {}

  std::vector<Hit> search(const Model &model, const char *text, const vlbeit_image *image,
                          std::size_t top_k, std::size_t rerank_k) const {
    std::size_t count = 0;
    check(vlbeit_index_search(model.get(), index_, text, image, top_k, rerank_k, nullptr, 0,
                              &count));
    std::vector<vlbeit_hit> raw(count);
    check(vlbeit_index_search(model.get(), index_, text, image, top_k, rerank_k, raw.data(),
                              raw.size(), &count));
    std::vector<Hit> hits;
    for (std::size_t i = 0; i < count && i < raw.size(); i++) {
      const auto &h = raw[i];
      hits.push_back({h.entry, h.id, h.metadata ? std::optional<std::string>(h.metadata)
                                                : std::nullopt,
                      h.similarity, h.reranked ? std::optional<float>(h.match_score)
                                               : std::nullopt,
                      h.dual_rank});
    }
    return hits;
  }

  vlbeit_index *index_ = nullptr;
};

}  // namespace vlbeit

#endif  // VLBEIT_HPP
