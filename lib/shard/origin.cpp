// origin.cpp: the publisher: encode, sign, write a version directory through
// version_writer (temp dir + rename), then `latest`, then prune.
#include "dtrain/shard/origin.h"

#include <algorithm>
#include <ctime>
#include <system_error>

#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard {

namespace fs = std::filesystem;

result<publisher> publisher::create(publisher_options opts) {
  if (opts.keep_versions == 0) return invalid_argument("publisher: keep_versions must be >= 1");
  if (opts.root.empty()) return invalid_argument("publisher: empty root");
  std::error_code ec;
  fs::create_directories(opts.root, ec);
  if (ec) return unavailable("publisher: create " + opts.root.string() + ": " + ec.message());
  DTRAIN_RETURN_IF_ERROR(remove_stale_temps(opts.root));
  auto latest = read_latest(opts.root);
  if (!latest.ok()) return std::move(latest).status();
  publisher p(std::move(opts));
  p.latest_ = *latest;
  return p;
}

result<std::uint64_t> publisher::next_version() const {
  auto versions = list_versions(opts_.root);
  if (!versions.ok()) return std::move(versions).status();
  std::uint64_t top = latest_;
  if (!versions->empty()) top = std::max(top, versions->back());
  if (top == UINT64_MAX) return failed_precondition("publisher: version counter exhausted");
  return top + 1;
}

result<std::uint64_t> publisher::publish(std::span<const std::byte> checkpoint_bytes) {
  auto v = next_version();
  if (!v.ok()) return std::move(v).status();
  return publish(checkpoint_bytes, *v);
}

result<std::uint64_t> publisher::publish_tensors(std::span<const tensor_desc> tensors,
                                                 std::span<const std::byte> bytes) {
  auto v = next_version();
  if (!v.ok()) return std::move(v).status();
  return publish_tensors(tensors, bytes, *v);
}

encode_options publisher::options_for(std::uint64_t version) const {
  encode_options o = opts_.encoding;
  o.version = version;
  if (o.created_unix == 0) o.created_unix = static_cast<std::uint64_t>(std::time(nullptr));
  o.delta_base.reset();
  if (opts_.delta_from_previous && previous_version_ != 0 && previous_version_ < version)
    o.delta_base = delta_reference{previous_version_, previous_};
  return o;
}

void publisher::remember(std::span<const std::byte> bytes, std::uint64_t version) {
  if (!opts_.delta_from_previous) return;
  previous_.assign(bytes.begin(), bytes.end());
  previous_version_ = version;
}

result<std::uint64_t> publisher::publish(std::span<const std::byte> checkpoint_bytes, std::uint64_t version) {
  if (version == 0) return invalid_argument("publisher: version 0");
  auto enc = encode(checkpoint_bytes, options_for(version));
  if (!enc.ok()) return std::move(enc).status();
  auto v = write(*enc, version);
  if (v.ok()) remember(checkpoint_bytes, version);
  return v;
}

result<std::uint64_t> publisher::publish_tensors(std::span<const tensor_desc> tensors,
                                                 std::span<const std::byte> bytes, std::uint64_t version) {
  if (version == 0) return invalid_argument("publisher: version 0");
  auto enc = encode_tensors(tensors, bytes, options_for(version));
  if (!enc.ok()) return std::move(enc).status();
  auto v = write(*enc, version);
  if (v.ok()) remember(bytes, version);
  return v;
}

result<std::uint64_t> publisher::write(const encoded_checkpoint& enc, std::uint64_t version) {
  auto versions = list_versions(opts_.root);
  if (!versions.ok()) return std::move(versions).status();
  if (version <= latest_ || (!versions->empty() && version <= versions->back())) {
    return failed_precondition("publisher: version " + std::to_string(version) +
                               " is not above every version present (latest " + std::to_string(latest_) + ")");
  }
  auto w = version_writer::begin(opts_.root, version);
  if (!w.ok()) return std::move(w).status();
  for (std::size_t i = 0; i < enc.man.total_chunks(); ++i) {
    DTRAIN_RETURN_IF_ERROR(w->write_chunk(i, enc.chunk(i)));
  }
  return finish_version(*w, enc.man, version);
}

result<std::uint64_t> publisher::finish_version(version_writer& w, const manifest& man, std::uint64_t version) {
  auto signed_bytes = sign_manifest(man, opts_.origin);
  if (!signed_bytes.ok()) return std::move(signed_bytes).status();
  DTRAIN_RETURN_IF_ERROR(w.write_manifest(*signed_bytes));
  DTRAIN_RETURN_IF_ERROR(w.commit());
  DTRAIN_RETURN_IF_ERROR(write_latest(opts_.root, version));
  latest_ = version;
  // Only now, with `latest` moved, may old versions go.
  auto pruned = prune_versions(opts_.root, opts_.keep_versions, latest_);
  if (!pruned.ok()) return std::move(pruned).status();
  return version;
}

// ---- streamed versions ----------------------------------------------------------

result<publication> publisher::begin_with(
    std::uint64_t version, const std::function<result<stream_encoder>(stream_encoder::chunk_sink)>& make) {
  publication p;
  p.pub_ = this;
  p.version_ = version;
  auto w = version_writer::begin(opts_.root, version);
  if (!w.ok()) return std::move(w).status();
  p.writer_ = std::make_unique<version_writer>(std::move(w).value());
  version_writer* vw = p.writer_.get();
  auto enc = make([vw](std::size_t i, std::span<const std::byte> b) { return vw->write_chunk(i, b); });
  if (!enc.ok()) return std::move(enc).status();  // p's writer removes the temp directory
  p.enc_.emplace(std::move(enc).value());
  // A streamed version is not kept in memory: the next publish() cannot delta-code against it.
  previous_.clear();
  previous_version_ = 0;
  return p;
}

result<publication> publisher::begin(std::uint64_t total_size) {
  auto v = next_version();
  if (!v.ok()) return std::move(v).status();
  encode_options o = options_for(*v);
  o.delta_base.reset();
  return begin_with(*v, [&](stream_encoder::chunk_sink sink) { return stream_encoder::create(total_size, o, std::move(sink)); });
}

result<publication> publisher::begin_tensors(std::span<const tensor_desc> tensors) {
  auto v = next_version();
  if (!v.ok()) return std::move(v).status();
  encode_options o = options_for(*v);
  o.delta_base.reset();
  return begin_with(*v, [&](stream_encoder::chunk_sink sink) {
    return stream_encoder::create_tensors(tensors, o, std::move(sink));
  });
}

publication::publication(publication&&) noexcept = default;
publication& publication::operator=(publication&&) noexcept = default;
publication::~publication() = default;

status publication::write(std::span<const std::byte> bytes) {
  if (!enc_ || failed_) return failed_precondition("publication: already committed or failed");
  status st = enc_->write(bytes);
  if (!st.ok()) failed_ = true;
  return st;
}

result<std::uint64_t> publication::commit() {
  if (!enc_ || failed_ || pub_ == nullptr) return failed_precondition("publication: already committed or failed");
  auto man = enc_->finish();
  enc_.reset();
  if (!man.ok()) {
    failed_ = true;
    return std::move(man).status();
  }
  auto v = pub_->finish_version(*writer_, *man, version_);
  if (!v.ok()) failed_ = true;
  return v;
}

}  // namespace dtrain::shard
