// The fetch's files: the partial checkpoint (written through the decoder, read back for
// rebuilds), the resume file, and the final fsync and rename (fetch_run.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dtrain/crypto/constant_time.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/resume.h"
#include "fetch_run.h"

namespace dtrain::shard::client_detail {

status fetch_run::open_files() {
  const std::string v = "v" + std::to_string(man_.version);
  partial_ = o_.out_dir / (v + ".partial");
  final_ = o_.out_dir / v;
  std::error_code ec;
  fs::create_directories(partial_, ec);
  if (ec) return fs_status("create " + partial_.string(), ec);
  DTRAIN_RETURN_IF_ERROR(write_file_atomic(partial_ / "manifest", mp_.bytes, true));
  const fs::path ck = partial_ / "checkpoint";
  fd_.fd = ::open(ck.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_.fd < 0) return errno_status("open " + ck.string(), errno);
  struct stat st {};
  if (::fstat(fd_.fd, &st) != 0) return errno_status("stat " + ck.string(), errno);
  if (static_cast<std::uint64_t>(st.st_size) != man_.total_size &&
      ::ftruncate(fd_.fd, static_cast<off_t>(man_.total_size)) != 0)
    return errno_status("truncate " + ck.string(), errno);
  manifest_digest_ = resume_manifest_digest(mp_.bytes);
  verify_batch_ = hash_chunks_batch(man_.algo);
  written_.assign(n_data(), 0);
  chunks_.assign(man_.total_chunks(), chunk_state{});
  if (man_.delta != delta_codec::none) {
    // Delta-coded chunks decode against the base version's checkpoint, which an earlier
    // fetch left in out_dir (keep_versions keeps it).
    const fs::path base = o_.out_dir / ("v" + std::to_string(man_.delta_base)) / "checkpoint";
    auto mapped = map_file(base);
    if (!mapped.ok()) {
      return failed_precondition("version " + std::to_string(man_.version) + " is delta-coded against version " +
                                 std::to_string(man_.delta_base) + ", which is not in " + o_.out_dir.string() +
                                 " (" + mapped.status().to_string() + "): fetch it first");
    }
    base_ = std::move(mapped).value();
  }
  auto d = decoder::create(
      man_, [this](std::uint64_t off, std::span<const std::byte> b) { return on_write(off, b); }, base_.bytes());
  if (!d.ok()) return d.status();
  dec_.emplace(std::move(d).value());
  // A rebuild reads the stripe's verified chunks back from the file rather than the
  // decoder keeping a copy of each one.
  dec_->set_read_back([this](std::uint64_t off, std::span<std::byte> into) {
    return pread_all(fd_.fd, into, off, "read back " + (partial_ / "checkpoint").string());
  });
  return ok_status();
}

status fetch_run::on_write(std::uint64_t offset, std::span<const std::byte> bytes) {
  const std::size_t i = data_index_at(offset);
  DTRAIN_ASSERT(i < n_data() && man_.chunks[i].offset == offset);
  if (i != skip_write_) {
    status st = pwrite_all(fd_.fd, bytes, offset, "write " + (partial_ / "checkpoint").string());
    if (!st.ok()) {
      write_error_ = st;
      return st;
    }
  }
  written_[i] = 1;
  ++unsaved_;
  // A chunk written while another one was being added came from parity. (A rebuild can
  // also write a chunk that waits later in the same batch: then it counts as fetched.)
  if (!resuming_ && std::find(adding_.begin(), adding_.end(), i) == adding_.end()) ++rep_.chunks_from_parity;
  if (!man_.delta_coded(i)) {
    check_suspect(i, bytes);  // plain chunks: written bytes are the bytes that travel
  } else if (std::find(adding_.begin(), adding_.end(), i) == adding_.end()) {
    suspects_.erase(i);  // rebuilt from parity: its wire bytes are not at hand, no one is named
  }  // (a delta-coded chunk being added settles its suspect with its wire bytes)
  just_written_.push_back(i);
  return ok_status();
}

void fetch_run::load_resume() {
  auto bytes = read_small_file(partial_ / "resume", resume_header_bytes + n_data() / 8 + 1);
  if (!bytes) return;
  auto rs = parse_resume(*bytes);
  if (!rs.ok() || rs->version != man_.version || rs->manifest_digest != manifest_digest_ || rs->done.size() != n_data()) return;
  resuming_ = true;
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < n_data(); ++i) {
    // A delta-coded chunk is verified on its wire bytes, which the file does not hold:
    // it is fetched again.
    if (rs->done[i] == 0 || dec_->has_chunk(i) || man_.delta_coded(i)) continue;
    buf.resize(static_cast<std::size_t>(man_.chunks[i].length));
    if (!pread_all(fd_.fd, buf, man_.chunks[i].offset, "read partial checkpoint").ok()) continue;
    skip_write_ = i;
    adding_ = {i};
    status st = dec_->add_chunk(i, buf);
    skip_write_ = npos;
    adding_.clear();
    if (st.ok()) rep_.resumed = true;
  }
  resuming_ = false;
  for (std::size_t c = 0; c < chunks_.size(); ++c) {
    if (dec_->has_chunk(c)) chunks_[c].ph = phase::held;
  }
  just_written_.clear();
  unsaved_ = 0;
}

status fetch_run::save_resume(bool durable) {
  resume_state s;
  s.version = man_.version;
  s.manifest_digest = manifest_digest_;
  s.done = written_;
  unsaved_ = 0;
  last_save_ = steady::now();
  return write_file_atomic(partial_ / "resume", encode_resume(s), durable);
}


status fetch_run::finish() {
  if (::fsync(fd_.fd) != 0) return errno_status("fsync checkpoint", errno);
  ::close(fd_.fd);
  fd_.fd = -1;
  std::error_code ec;
  fs::remove(partial_ / "resume", ec);
  DTRAIN_RETURN_IF_ERROR(fsync_path(partial_));
  fs::remove_all(final_, ec);  // a stale or different copy of this version
  if (ec) return fs_status("remove " + final_.string(), ec);
  fs::rename(partial_, final_, ec);
  if (ec) return fs_status("rename " + partial_.string(), ec);
  return fsync_path(o_.out_dir);
}


}  // namespace dtrain::shard::client_detail
