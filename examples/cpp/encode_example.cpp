// Embeds image files with pe::Encoder and prints, for each, its nearest
// neighbour among the others by cosine similarity.
//   encode_example MODEL.pt IMAGE...
// MODEL.pt comes from: python -m perception_retrieval.export --checkpoint PE-Core-L14-336.pt --out MODEL.pt

#include <pe/encoder.hpp>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt IMAGE...\n";
    return 2;
  }
  try {
    const pe::Encoder encoder(argv[1]);
    const std::vector<std::string> paths(argv + 2, argv + argc);
    const pe::EncodeResult result = encoder.encode_files_skipping_failures(paths);
    for (const auto& failure : result.failures) std::cerr << "skipped: " << failure.reason << "\n";
    std::cout << encoder.info().model_name << ": " << result.embeddings.rows() << " x " << result.embeddings.cols()
              << " embeddings\n";
    const pe::Embeddings similarity = result.embeddings * result.embeddings.transpose();  // cosine: rows are unit
    for (Eigen::Index i = 0; i < similarity.rows(); ++i) {
      Eigen::Index best = -1;
      for (Eigen::Index j = 0; j < similarity.cols(); ++j) {
        if (j != i && (best < 0 || similarity(i, j) > similarity(i, best))) best = j;
      }
      std::cout << paths[result.rows[i]] << " -> "
                << (best < 0 ? std::string("(no other image)") : paths[result.rows[best]]) << "\n";
    }
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
