// Test helper: what a model directory holds, but the model store's writers' lock file (made by
// the first Put or Delete and left in place).
#ifndef PRIMSERVE_TESTS_SERVER_MODEL_DIR_FILES_H_
#define PRIMSERVE_TESTS_SERVER_MODEL_DIR_FILES_H_

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "server/model_store.h"

namespace primserve {

// The file names in `dir`, sorted, without ModelStore::kLockFile.
inline std::vector<std::string> ModelDirFiles(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (const auto& item : std::filesystem::directory_iterator(dir)) {
    std::string file = item.path().filename().string();
    if (file != ModelStore::kLockFile) files.push_back(std::move(file));
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace primserve

#endif  // PRIMSERVE_TESTS_SERVER_MODEL_DIR_FILES_H_
