// Runs an exported higherpose pipeline (higherpose-export → pose.pt2, an AOTInductor package) on one
// image, without Python, and writes the poses as JSON in the results format tools/valid.py writes:
//
//   run_pose pose.pt2 image.ppm [--image-id N] [--out results.json]
//
// The image must have the exported size (the package's metadata says which). With OpenCV's C++
// API (found by CMake) any format cv::imread reads is accepted; without it, binary PPM (P6, 8-bit).
// The higherpose operator library must be loaded for the program's peak and grouping calls: linking
// higherpose::ops does that.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#if defined(HIGHERPOSE_WITH_OPENCV)
#include <opencv2/imgcodecs.hpp>
#endif

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> bgr;  // height x width x 3
};

// Binary PPM (P6, maxval 255): header tokens, possibly with # comments, then RGB bytes.
Image read_ppm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open image " + path);
  auto token = [&in]() {
    std::string t;
    while (in >> t) {
      if (t[0] != '#') return t;
      std::string rest;
      std::getline(in, rest);  // a comment runs to the end of the line
    }
    throw std::runtime_error("truncated PPM header");
  };
  if (token() != "P6") throw std::runtime_error(path + " is not a binary PPM (P6) image");
  Image image;
  image.width = std::stoi(token());
  image.height = std::stoi(token());
  if (std::stoi(token()) != 255) throw std::runtime_error(path + ": only 8-bit PPM (maxval 255) is read");
  in.get();  // the single whitespace after the header
  std::vector<uint8_t> rgb(static_cast<size_t>(image.width) * image.height * 3);
  if (!in.read(reinterpret_cast<char*>(rgb.data()), static_cast<std::streamsize>(rgb.size())))
    throw std::runtime_error(path + ": the pixel data is truncated");
  image.bgr.resize(rgb.size());
  for (size_t i = 0; i < rgb.size(); i += 3) {
    image.bgr[i] = rgb[i + 2];
    image.bgr[i + 1] = rgb[i + 1];
    image.bgr[i + 2] = rgb[i];
  }
  return image;
}

Image read_image(const std::string& path) {
#if defined(HIGHERPOSE_WITH_OPENCV)
  const cv::Mat m = cv::imread(path, cv::IMREAD_COLOR);  // BGR, 8-bit
  if (!m.empty()) {
    Image image;
    image.width = m.cols;
    image.height = m.rows;
    image.bgr.assign(m.data, m.data + m.total() * 3);  // imread's Mat is continuous
    return image;
  }
#endif
  return read_ppm(path);
}

// A number from the package's metadata entry "higherpose" (a small JSON object).
int metadata_int(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\"");
  if (at == std::string::npos) throw std::runtime_error("the package metadata has no " + key);
  return std::stoi(json.substr(json.find(':', at) + 1));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: run_pose PACKAGE.pt2 IMAGE [--image-id N] [--out results.json]\n";
    return 2;
  }
  std::string package = argv[1], image_path = argv[2], out_path;
  int64_t image_id = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--image-id") {
      image_id = std::stoll(argv[i + 1]);
    } else if (flag == "--out") {
      out_path = argv[i + 1];
    } else {
      std::cerr << "error: unknown option " << flag << "\n";
      return 2;
    }
  }
  try {
    torch::inductor::AOTIModelPackageLoader loader(package);
    const std::string info = loader.get_metadata().at("higherpose");
    const int width = metadata_int(info, "image_width"), height = metadata_int(info, "image_height");
    const Image image = read_image(image_path);
    if (image.width != width || image.height != height) {
      std::cerr << "error: the program takes " << width << "x" << height << " images, " << image_path << " is "
                << image.width << "x" << image.height << "\n";
      return 2;
    }
    auto input = torch::from_blob(const_cast<uint8_t*>(image.bgr.data()), {1, height, width, 3}, torch::kUInt8).clone();
    const std::vector<at::Tensor> outputs = loader.run({input});
    const at::Tensor poses = outputs.at(0).cpu(), scores = outputs.at(1).cpu();
    const int64_t count = outputs.at(2).cpu()[0].item<int64_t>();

    std::ostringstream json;
    json.precision(9);
    json << "[";
    for (int64_t p = 0; p < count; ++p) {
      json << (p ? ",\n " : "") << "{\"image_id\": " << image_id << ", \"category_id\": 1, \"keypoints\": [";
      const at::Tensor person = poses[0][p];
      for (int64_t j = 0; j < person.size(0); ++j) {
        json << (j ? ", " : "") << person[j][0].item<float>() << ", " << person[j][1].item<float>() << ", "
             << person[j][2].item<float>();
      }
      json << "], \"score\": " << scores[0][p].item<float>() << "}";
    }
    json << "]\n";
    if (out_path.empty()) {
      std::cout << json.str();
    } else {
      std::ofstream(out_path) << json.str();
      std::cerr << count << " persons written to " << out_path << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
