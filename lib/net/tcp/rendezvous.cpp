// file_rendezvous: addresses through a shared directory.
#include "dtrain/net/tcp/rendezvous.h"

#include <chrono>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>
#include <filesystem>

namespace dtrain::net::tcp {

result<std::vector<address>> file_rendezvous(const std::string& dir, const std::string& prefix, rank_t rank,
                                             std::size_t size, const address& mine, deadline by) {
  namespace fs = std::filesystem;
  if (size == 0 || rank >= size) return invalid_argument("file_rendezvous: rank " + std::to_string(rank) + " of " + std::to_string(size));
  const fs::path base(dir);
  const auto path_of = [&](std::size_t r) { return base / (prefix + "." + std::to_string(r)); };
  {
    const fs::path tmp = base / (prefix + "." + std::to_string(rank) + ".tmp");
    std::ofstream out(tmp, std::ios::trunc);
    out << mine.to_string() << "\n";
    out.close();
    if (!out) return unavailable("file_rendezvous: cannot write " + tmp.string());
    std::error_code ec;
    fs::rename(tmp, path_of(rank), ec);
    if (ec) return unavailable("file_rendezvous: cannot publish " + path_of(rank).string() + ": " + ec.message());
  }
  std::vector<address> out(size);
  std::vector<bool> have(size, false);
  std::size_t missing = size;
  for (;;) {
    for (std::size_t r = 0; r < size; ++r) {
      if (have[r]) continue;
      std::ifstream in(path_of(r));
      if (!in) continue;
      std::string line;
      std::getline(in, line);
      auto a = address::parse(line);
      if (!a.ok()) return data_loss("file_rendezvous: " + path_of(r).string() + ": " + a.status().message());
      out[r] = *a;
      have[r] = true;
      --missing;
    }
    if (missing == 0) return out;
    if (clock::now() >= by) {
      std::string names;
      for (std::size_t r = 0; r < size; ++r)
        if (!have[r]) names += (names.empty() ? "" : ", ") + std::to_string(r);
      return status(status_code::deadline_exceeded, "file_rendezvous: rank(s) " + names + " did not publish in " + dir);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace dtrain::net::tcp
