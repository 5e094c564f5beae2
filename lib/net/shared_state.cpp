// Shared-state sync: manifests all-gathered, a per-tensor vote every peer computes alike,
// then a transfer plan every peer derives from the votes, so holders only send and
// outdated peers only receive, with no request round trip.
#include "dtrain/net/shared_state.h"

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <utility>

#include "dtrain/core/bytes.h"

namespace dtrain::net {

namespace {

constexpr std::uint32_t kStepHello = 0, kStepManifest = 1, kStepChunk = 2, kStepOutcome = 3;
constexpr std::uint32_t kControlMagic = 0x53535444u;   // "DTSS" little-endian
constexpr std::uint32_t kManifestMagic = 0x4D535444u;  // "DTSM" little-endian
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kKindHello = 1, kKindOutcome = 2;
constexpr std::size_t kManifestHeader = 32, kEntryFixed = 32, kTrailer = 8;
constexpr std::uint32_t kNoCulprit = 0xFFFFFFFFu;
/// Largest manifest a hello may announce (1 GiB: 2^26 chunk hashes).
constexpr std::uint64_t kMaxManifest = std::uint64_t{1} << 30;

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }
std::string rank_str(std::size_t r) { return "rank " + std::to_string(r); }

void store_hash(std::byte* p, const hash128& h) noexcept {
  const auto c = h.canonical();
  std::copy(c.begin(), c.end(), p);
}
hash128 load_hash(const std::byte* p) noexcept {
  hash128 h;
  for (int i = 0; i < 8; ++i) h.high = (h.high << 8) | static_cast<std::uint64_t>(p[i]);
  for (int i = 8; i < 16; ++i) h.low = (h.low << 8) | static_cast<std::uint64_t>(p[i]);
  return h;
}

bool valid_type_code(std::uint8_t t) noexcept { return t <= 2 || t == untyped_code; }
std::size_t type_size(std::uint8_t t) noexcept { return t == untyped_code ? 1 : dtype_size(static_cast<dtype>(t)); }
std::string type_name(std::uint8_t t) {
  return t == untyped_code ? std::string("untyped") : std::string(dtype_name(static_cast<dtype>(t)));
}

bool valid_code(std::uint8_t c) noexcept { return c <= static_cast<std::uint8_t>(status_code::internal); }

status check_sync_options(const sync_options& o) {
  if (o.timeout.count() <= 0) return invalid_argument("shared_state: timeout must be > 0");
  if (o.channel >= (1u << 24)) return invalid_argument("shared_state: channel must be < 2^24 (make_tag)");
  if (o.chunk_bytes < 1 || o.chunk_bytes > max_chunk_bytes)
    return invalid_argument("shared_state: chunk_bytes must lie in [1, 2^30], got " + std::to_string(o.chunk_bytes));
  if (o.max_inflight_sends < 1) return invalid_argument("shared_state: max_inflight_sends must be >= 1");
  if (static_cast<std::uint8_t>(o.strategy) > 2) return invalid_argument("shared_state: unknown strategy");
  return ok_status();
}

// ---- the vote ------------------------------------------------------------------------

struct election {
  std::vector<hash128> winner;               // per tensor
  std::vector<std::vector<rank_t>> holders;  // per tensor: voters holding the winner, ascending
  std::uint64_t revision = 0;
};

// First difference between the tensor lists of ranks a < b, in name order, or ok.
status compare_sets(const manifest& ma, rank_t a, const manifest& mb, rank_t b) {
  const auto& x = ma.tensors;
  const auto& y = mb.tensors;
  std::size_t i = 0, j = 0;
  auto missing = [&](const std::string& name, rank_t has, rank_t lacks) {
    return failed_precondition("shared_state: the tensor sets differ: " + quoted(name) + " is registered on " +
                               rank_str(has) + " but not on " + rank_str(lacks));
  };
  while (i < x.size() || j < y.size()) {
    if (j == y.size() || (i < x.size() && x[i].name < y[j].name)) return missing(x[i].name, a, b);
    if (i == x.size() || y[j].name < x[i].name) return missing(y[j].name, b, a);
    if (x[i].bytes != y[j].bytes)
      return failed_precondition("shared_state: the tensor sets differ: " + quoted(x[i].name) + " holds " +
                                 std::to_string(x[i].bytes) + " bytes on " + rank_str(a) + " but " +
                                 std::to_string(y[j].bytes) + " on " + rank_str(b));
    if (x[i].type != y[j].type)
      return failed_precondition("shared_state: the tensor sets differ: " + quoted(x[i].name) + " is " +
                                 type_name(x[i].type) + " on " + rank_str(a) + " but " + type_name(y[j].type) +
                                 " on " + rank_str(b));
    ++i, ++j;
  }
  return ok_status();
}

status elect(const std::vector<manifest>& m, election& out) {
  const std::size_t n = m.size();
  for (rank_t r = 1; r < n; ++r) {
    if (m[r].chunk_bytes != m[0].chunk_bytes)
      return failed_precondition("shared_state: chunk_bytes differ: " + std::to_string(m[0].chunk_bytes) + " on " +
                                 rank_str(0) + ", " + std::to_string(m[r].chunk_bytes) + " on " + rank_str(r));
    DTRAIN_RETURN_IF_ERROR(compare_sets(m[0], 0, m[r], r));
  }
  std::vector<rank_t> voters;
  for (rank_t r = 0; r < n; ++r)
    if (m[r].strategy != sync_strategy::receive_only) voters.push_back(r);
  if (voters.empty()) return failed_precondition("shared_state: every peer is receive_only; nobody holds the state");

  const std::size_t nt = m[0].tensors.size();
  election e;
  e.winner.resize(nt);
  e.holders.resize(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    // Candidates are named by their lowest-ranked holder; (count, max revision, -min rank).
    std::size_t best_count = 0;
    std::uint64_t best_rev = 0;
    rank_t best_min = 0;
    bool have = false;
    for (std::size_t vi = 0; vi < voters.size(); ++vi) {
      const hash128& h = m[voters[vi]].tensors[i].hash;
      bool seen = false;
      for (std::size_t vj = 0; vj < vi && !seen; ++vj) seen = m[voters[vj]].tensors[i].hash == h;
      if (seen) continue;  // counted with its lowest-ranked holder
      std::size_t count = 0;
      std::uint64_t rev = 0;
      for (std::size_t vj = vi; vj < voters.size(); ++vj)
        if (m[voters[vj]].tensors[i].hash == h) {
          ++count;
          rev = std::max(rev, m[voters[vj]].revision);
        }
      if (!have || count > best_count || (count == best_count && rev > best_rev)) {
        // Equal count and revision: the earlier candidate has the lower minimum rank.
        have = true;
        best_count = count;
        best_rev = rev;
        best_min = voters[vi];
      }
    }
    e.winner[i] = m[best_min].tensors[i].hash;
    for (rank_t v : voters)
      if (m[v].tensors[i].hash == e.winner[i]) e.holders[i].push_back(v);
  }
  for (rank_t r = 0; r < n; ++r) {
    if (m[r].strategy != sync_strategy::send_only) continue;
    for (std::size_t i = 0; i < nt; ++i)
      if (!(m[r].tensors[i].hash == e.winner[i]))
        return failed_precondition("shared_state: " + rank_str(r) + " is send_only but its tensor " +
                                   quoted(m[r].tensors[i].name) + " lost the vote");
  }
  // Winning revision: the highest among voters holding every winner, else among voters
  // holding at least one.
  bool found_all = false, found_some = false;
  std::uint64_t rev_all = 0, rev_some = 0;
  for (rank_t v : voters) {
    std::size_t wins = 0;
    for (std::size_t i = 0; i < nt; ++i) wins += m[v].tensors[i].hash == e.winner[i] ? 1 : 0;
    if (wins == nt) {
      rev_all = found_all ? std::max(rev_all, m[v].revision) : m[v].revision;
      found_all = true;
    }
    if (wins > 0) {
      rev_some = found_some ? std::max(rev_some, m[v].revision) : m[v].revision;
      found_some = true;
    }
  }
  e.revision = found_all ? rev_all : rev_some;
  out = std::move(e);
  return ok_status();
}

// The holder that serves chunk c of tensor i to `puller`.
rank_t source_of(const election& e, std::size_t i, std::uint64_t c, rank_t puller) noexcept {
  const auto& h = e.holders[i];
  return h[static_cast<std::size_t>((c + i + puller) % h.size())];
}

// ---- all-to-all rounds -------------------------------------------------------------------

// Sends `mine` to every other peer and receives one message from each into in[r] (its
// length into len[r]). Does not stop at the first failure: every op with a live peer
// runs to completion (so no peer is left blocked on this one), then the first error is
// returned; a message longer than in[r] becomes data_loss naming r. Every op posted here
// is retired before returning.
status exchange(transport& t, tag_t tag, std::span<const std::byte> mine, std::span<const std::span<std::byte>> in,
                std::span<std::size_t> len, deadline d, std::string_view what) {
  const std::size_t n = t.size();
  const rank_t me = t.rank();
  struct posted {
    op o;
    rank_t peer;
    bool is_recv;
  };
  std::vector<posted> ops;
  ops.reserve(2 * n);
  status first;
  auto note = [&](const status& st, rank_t peer) {
    if (!first.ok()) return;
    first = st.code() == status_code::resource_exhausted
                ? data_loss("shared_state: " + std::string(what) + " from " + rank_str(peer) + " is too long")
                : st;
  };
  for (rank_t r = 0; r < n; ++r) {
    if (r == me) continue;
    auto o = t.post_recv(r, tag, in[r]);
    if (o.ok())
      ops.push_back({*o, r, true});
    else
      note(o.status(), r);
  }
  for (rank_t r = 0; r < n; ++r) {
    if (r == me) continue;
    auto o = t.post_send(r, tag, mine);
    if (o.ok())
      ops.push_back({*o, r, false});
    else
      note(o.status(), r);
  }
  for (const posted& p : ops) {
    auto w = t.wait(p.o, d);
    if (w.ok()) {
      if (p.is_recv) len[p.peer] = *w;
    } else {
      note(w.status(), p.peer);
    }
  }
  return first;
}

// Tells every peer this peer's outcome and hears theirs. Returns `local` if it failed,
// else a transport error of this round, else the failure of the lowest failing rank.
status outcome_round(transport& t, tag_t tag, const status& local, std::uint32_t culprit, deadline d) {
  const std::size_t n = t.size();
  const rank_t me = t.rank();
  std::array<std::byte, control_bytes> mine{};
  encode_outcome(mine, {local.code(), culprit});
  std::vector<std::array<std::byte, control_bytes>> in(n);
  std::vector<std::span<std::byte>> bufs(in.begin(), in.end());
  std::vector<std::size_t> len(n, 0);
  const status round = exchange(t, tag, mine, bufs, len, d, "outcome");
  if (!local.ok()) return local;
  if (!round.ok()) return round;
  for (rank_t r = 0; r < n; ++r) {
    if (r == me) continue;
    auto v = decode_outcome(std::span(in[r]).first(len[r]));
    if (!v.ok()) return data_loss("shared_state: outcome from " + rank_str(r) + ": " + v.status().message());
    if (v->code == status_code::ok) continue;
    std::string msg = "shared_state: " + rank_str(r) + " failed to sync (" + std::string(code_name(v->code)) + ")";
    if (v->culprit != kNoCulprit) msg += ": bad bytes from " + rank_str(v->culprit);
    return status(v->code, std::move(msg));
  }
  return ok_status();
}

}  // namespace

// ---- shared_state ------------------------------------------------------------------------

status shared_state::add(std::string name, std::span<std::byte> data, std::optional<dtype> type) {
  if (name.empty() || name.size() > max_tensor_name)
    return invalid_argument("shared_state: a tensor name must hold 1.." + std::to_string(max_tensor_name) +
                            " bytes, got " + std::to_string(name.size()));
  if (type && data.size() % dtype_size(*type) != 0)
    return invalid_argument("shared_state: tensor " + quoted(name) + " holds " + std::to_string(data.size()) +
                            " bytes, not a multiple of the " + std::string(dtype_name(*type)) + " element size");
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const shared_tensor& a, const std::string& b) { return a.name < b; });
  if (it != tensors_.end() && it->name == name)
    return invalid_argument("shared_state: tensor " + quoted(name) + " is already registered");
  tensors_.insert(it, shared_tensor{std::move(name), data, type});
  return ok_status();
}

const shared_tensor& shared_state::tensor(std::size_t i) const noexcept {
  DTRAIN_ASSERT(i < tensors_.size());
  return tensors_[i];
}

const shared_tensor* shared_state::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const shared_tensor& a, std::string_view b) { return a.name < b; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

std::uint64_t shared_state::total_bytes() const noexcept {
  std::uint64_t s = 0;
  for (const auto& t : tensors_) s += t.data.size();
  return s;
}

result<hash128> shared_state::hash(std::string_view name) const {
  const shared_tensor* t = find(name);
  if (!t) return invalid_argument("shared_state: no tensor " + quoted(name));
  return xxh3_128(t->data);
}

// ---- wire format -------------------------------------------------------------------------

manifest make_manifest(const shared_state& s, std::uint64_t chunk_bytes, sync_strategy strategy) {
  DTRAIN_ASSERT(chunk_bytes >= 1 && chunk_bytes <= max_chunk_bytes);
  manifest m;
  m.revision = s.revision();
  m.chunk_bytes = chunk_bytes;
  m.strategy = strategy;
  m.tensors.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const shared_tensor& t = s.tensor(i);
    manifest_entry e;
    e.name = t.name;
    e.bytes = t.data.size();
    e.type = t.type ? static_cast<std::uint8_t>(*t.type) : untyped_code;
    e.hash = xxh3_128(t.data);
    const std::uint64_t nc = chunk_count(e.bytes, chunk_bytes);
    e.chunks.resize(static_cast<std::size_t>(nc));
    for (std::uint64_t c = 0; c < nc; ++c) {
      const std::uint64_t off = c * chunk_bytes;
      e.chunks[c] = xxh3_128(t.data.subspan(off, std::min(chunk_bytes, e.bytes - off)));
    }
    m.tensors.push_back(std::move(e));
  }
  return m;
}

std::size_t encoded_manifest_bytes(const manifest& m) noexcept {
  std::size_t s = kManifestHeader + kTrailer;
  for (const auto& e : m.tensors) s += kEntryFixed + 16 * e.chunks.size() + e.name.size();
  return s;
}

result<std::size_t> encode_manifest(const manifest& m, std::span<std::byte> out) {
  if (m.chunk_bytes < 1 || m.chunk_bytes > max_chunk_bytes)
    return invalid_argument("encode_manifest: chunk_bytes out of range");
  if (static_cast<std::uint8_t>(m.strategy) > 2) return invalid_argument("encode_manifest: unknown strategy");
  if (m.tensors.size() > 0xFFFFFFFFu) return invalid_argument("encode_manifest: too many tensors");
  for (std::size_t i = 0; i < m.tensors.size(); ++i) {
    const auto& e = m.tensors[i];
    if (e.name.empty() || e.name.size() > max_tensor_name)
      return invalid_argument("encode_manifest: bad name length " + std::to_string(e.name.size()));
    if (i > 0 && !(m.tensors[i - 1].name < e.name))
      return invalid_argument("encode_manifest: names not strictly increasing at " + quoted(e.name));
    if (!valid_type_code(e.type) || e.bytes % type_size(e.type) != 0)
      return invalid_argument("encode_manifest: bad type code or size of " + quoted(e.name));
    if (e.chunks.size() != chunk_count(e.bytes, m.chunk_bytes))
      return invalid_argument("encode_manifest: wrong number of chunk hashes for " + quoted(e.name));
  }
  const std::size_t size = encoded_manifest_bytes(m);
  if (out.size() < size)
    return invalid_argument("encode_manifest: output holds " + std::to_string(out.size()) + " bytes, needs " +
                            std::to_string(size));
  byte_writer w(out.first(size));
  w.put<std::uint32_t>(kManifestMagic);
  w.put<std::uint8_t>(kVersion);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(m.strategy));
  w.put<std::uint16_t>(0);
  w.put<std::uint64_t>(m.revision);
  w.put<std::uint64_t>(m.chunk_bytes);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.tensors.size()));
  w.put<std::uint32_t>(0);
  for (const auto& e : m.tensors) {
    w.put<std::uint16_t>(static_cast<std::uint16_t>(e.name.size()));
    w.put<std::uint8_t>(e.type);
    w.put<std::uint8_t>(0);
    w.put<std::uint32_t>(0);
    w.put<std::uint64_t>(e.bytes);
    store_hash(w.take(16).data(), e.hash);
    for (const auto& c : e.chunks) store_hash(w.take(16).data(), c);
    w.put_bytes(std::as_bytes(std::span(e.name.data(), e.name.size())));
  }
  const std::uint64_t sum = xxh3_64(out.first(size - kTrailer));
  w.put<std::uint64_t>(sum);
  DTRAIN_ASSERT(w.ok() && w.size() == size);
  return size;
}

status decode_manifest(std::span<const std::byte> msg, manifest& out) {
  auto bad = [](std::string what) { return data_loss("shared_state manifest: " + std::move(what)); };
  if (msg.size() < kManifestHeader + kTrailer)
    return bad("holds " + std::to_string(msg.size()) + " bytes, less than the 40 of an empty manifest");
  const std::byte* p = msg.data();
  if (load_le<std::uint32_t>(p) != kManifestMagic) return bad("bad magic");
  const auto version = load_le<std::uint8_t>(p + 4);
  if (version == 0) return bad("version 0");
  if (version > kVersion)
    return unimplemented("shared_state manifest: version " + std::to_string(version) + " is newer than " +
                         std::to_string(kVersion));
  const std::size_t body = msg.size() - kTrailer;
  if (xxh3_64(msg.first(body)) != load_le<std::uint64_t>(p + body)) return bad("checksum mismatch");

  byte_reader rd(msg.first(body));
  rd.take(5);
  manifest m;
  const auto strategy = rd.get<std::uint8_t>();
  if (strategy > 2) return bad("unknown strategy " + std::to_string(strategy));
  m.strategy = static_cast<sync_strategy>(strategy);
  if (rd.get<std::uint16_t>() != 0) return bad("non-zero reserved bytes");
  m.revision = rd.get<std::uint64_t>();
  m.chunk_bytes = rd.get<std::uint64_t>();
  if (m.chunk_bytes < 1 || m.chunk_bytes > max_chunk_bytes)
    return bad("chunk_bytes " + std::to_string(m.chunk_bytes) + " outside [1, 2^30]");
  const std::uint32_t count = rd.get<std::uint32_t>();
  if (rd.get<std::uint32_t>() != 0) return bad("non-zero reserved bytes");
  if (count > rd.remaining() / kEntryFixed) return bad("tensor count " + std::to_string(count) + " exceeds the message");
  m.tensors.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string at = "entry " + std::to_string(i);
    if (rd.remaining() < kEntryFixed) return bad(at + " is truncated");
    manifest_entry e;
    const std::size_t name_len = rd.get<std::uint16_t>();
    e.type = rd.get<std::uint8_t>();
    const auto r1 = rd.get<std::uint8_t>();
    const auto r2 = rd.get<std::uint32_t>();
    e.bytes = rd.get<std::uint64_t>();
    e.hash = load_hash(rd.take(16).data());
    if (name_len < 1 || name_len > max_tensor_name) return bad(at + ": name length " + std::to_string(name_len));
    if (!valid_type_code(e.type)) return bad(at + ": unknown type code " + std::to_string(e.type));
    if (r1 != 0 || r2 != 0) return bad(at + ": non-zero reserved bytes");
    if (e.bytes % type_size(e.type) != 0) return bad(at + ": size not a multiple of the element size");
    if (name_len > rd.remaining()) return bad(at + ": the name exceeds the message");
    const std::uint64_t nc = chunk_count(e.bytes, m.chunk_bytes);
    if (nc > (rd.remaining() - name_len) / 16)
      return bad(at + ": " + std::to_string(nc) + " chunk hashes and the name exceed the message");
    e.chunks.resize(static_cast<std::size_t>(nc));
    for (auto& c : e.chunks) c = load_hash(rd.take(16).data());
    const auto name = rd.take(name_len);
    e.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
    if (!m.tensors.empty() && !(m.tensors.back().name < e.name))
      return bad(at + ": name " + quoted(e.name) + " not after " + quoted(m.tensors.back().name));
    m.tensors.push_back(std::move(e));
  }
  DTRAIN_ASSERT(rd.ok());  // every read above was bounded by a check
  if (rd.remaining() != 0) return bad(std::to_string(rd.remaining()) + " trailing bytes before the checksum");
  out = std::move(m);
  return ok_status();
}

void encode_hello(std::span<std::byte, control_bytes> out, std::uint64_t manifest_size) noexcept {
  std::byte* p = out.data();
  store_le<std::uint32_t>(p, kControlMagic);
  store_le<std::uint8_t>(p + 4, kVersion);
  store_le<std::uint8_t>(p + 5, kKindHello);
  store_le<std::uint16_t>(p + 6, 0);
  store_le<std::uint64_t>(p + 8, manifest_size);
}

namespace {
// Length, magic, version and kind of a control message.
status check_control(std::span<const std::byte> msg, std::uint8_t kind, std::string_view what) {
  const std::string w = "shared_state " + std::string(what) + ": ";
  if (msg.size() != control_bytes) return data_loss(w + "holds " + std::to_string(msg.size()) + " bytes, not 16");
  if (load_le<std::uint32_t>(msg.data()) != kControlMagic) return data_loss(w + "bad magic");
  const auto version = load_le<std::uint8_t>(msg.data() + 4);
  if (version == 0) return data_loss(w + "version 0");
  if (version > kVersion) return unimplemented(w + "version " + std::to_string(version) + " is newer than 1");
  if (load_le<std::uint8_t>(msg.data() + 5) != kind) return data_loss(w + "wrong message kind");
  return ok_status();
}
}  // namespace

result<std::uint64_t> decode_hello(std::span<const std::byte> msg, std::uint64_t max_size) {
  DTRAIN_RETURN_IF_ERROR(check_control(msg, kKindHello, "hello"));
  if (load_le<std::uint16_t>(msg.data() + 6) != 0) return data_loss("shared_state hello: non-zero reserved bytes");
  const auto size = load_le<std::uint64_t>(msg.data() + 8);
  if (size < kManifestHeader + kTrailer || size > max_size)
    return data_loss("shared_state hello: manifest size " + std::to_string(size) + " outside [40, " +
                     std::to_string(max_size) + "]");
  return size;
}

void encode_outcome(std::span<std::byte, control_bytes> out, const sync_outcome& v) noexcept {
  std::byte* p = out.data();
  store_le<std::uint32_t>(p, kControlMagic);
  store_le<std::uint8_t>(p + 4, kVersion);
  store_le<std::uint8_t>(p + 5, kKindOutcome);
  store_le<std::uint8_t>(p + 6, static_cast<std::uint8_t>(v.code));
  store_le<std::uint8_t>(p + 7, 0);
  store_le<std::uint32_t>(p + 8, v.culprit);
  store_le<std::uint32_t>(p + 12, 0);
}

result<sync_outcome> decode_outcome(std::span<const std::byte> msg) {
  DTRAIN_RETURN_IF_ERROR(check_control(msg, kKindOutcome, "outcome"));
  const auto code = load_le<std::uint8_t>(msg.data() + 6);
  if (!valid_code(code)) return data_loss("shared_state outcome: unknown status code " + std::to_string(code));
  if (load_le<std::uint8_t>(msg.data() + 7) != 0 || load_le<std::uint32_t>(msg.data() + 12) != 0)
    return data_loss("shared_state outcome: non-zero reserved bytes");
  return sync_outcome{static_cast<status_code>(code), load_le<std::uint32_t>(msg.data() + 8)};
}

// ---- the sync --------------------------------------------------------------------------

result<sync_report> sync_shared_state(transport& t, shared_state& state, const sync_options& o,
                                      std::uint32_t sequence) {
  DTRAIN_RETURN_IF_ERROR(check_sync_options(o));
  const deadline d = after(o.timeout);
  const std::size_t n = t.size();
  const rank_t me = t.rank();
  const std::uint64_t cb = o.chunk_bytes;

  // 1. Manifests: sizes first (hello), then the manifests themselves.
  std::vector<manifest> m(n);
  m[me] = make_manifest(state, cb, o.strategy);
  std::vector<std::byte> mine(encoded_manifest_bytes(m[me]));
  {
    auto w = encode_manifest(m[me], mine);
    if (!w.ok()) return internal_error("shared_state: cannot encode its own manifest: " + w.status().to_string());
  }
  if (n > 1) {
    std::array<std::byte, control_bytes> hello{};
    encode_hello(hello, mine.size());
    std::vector<std::array<std::byte, control_bytes>> hellos(n);
    std::vector<std::span<std::byte>> bufs(hellos.begin(), hellos.end());
    std::vector<std::size_t> len(n, 0);
    DTRAIN_RETURN_IF_ERROR(exchange(t, make_tag(o.channel, sequence, kStepHello), hello, bufs, len, d, "hello"));
    std::vector<std::vector<std::byte>> in(n);
    for (rank_t r = 0; r < n; ++r) {
      if (r == me) continue;
      auto size = decode_hello(std::span(hellos[r]).first(len[r]), kMaxManifest);
      if (!size.ok()) return status(size.status().code(), size.status().message() + " (from " + rank_str(r) + ")");
      in[r].resize(static_cast<std::size_t>(*size));
      bufs[r] = in[r];
    }
    DTRAIN_RETURN_IF_ERROR(exchange(t, make_tag(o.channel, sequence, kStepManifest), mine, bufs, len, d, "manifest"));
    for (rank_t r = 0; r < n; ++r) {
      if (r == me) continue;
      auto st = decode_manifest(std::span(in[r]).first(len[r]), m[r]);
      if (!st.ok()) return status(st.code(), st.message() + " (from " + rank_str(r) + ")");
    }
  }

  // 2. The vote, identical on every peer.
  election e;
  DTRAIN_RETURN_IF_ERROR(elect(m, e));
  const std::size_t nt = e.winner.size();

  sync_report rep;
  rep.received_from.assign(n, 0);
  rep.sent_to.assign(n, 0);
  rep.previous_revision = state.revision();
  rep.revision = e.revision;

  // 3. The plan: which tensors this peer pulls, where they go in the scratch slab.
  std::vector<std::size_t> pulled;              // tensor indices
  std::vector<std::uint64_t> offset(nt, 0);     // into the slab
  std::uint64_t scratch_bytes = 0;
  for (std::size_t i = 0; i < nt; ++i) {
    if (m[me].tensors[i].hash == e.winner[i]) continue;
    pulled.push_back(i);
    offset[i] = scratch_bytes;
    scratch_bytes += m[me].tensors[i].bytes;
  }
  rep.outdated = !pulled.empty();
  std::unique_ptr<std::byte[]> slab;
  if (scratch_bytes > 0) slab = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(scratch_bytes));

  status local;
  std::uint32_t culprit = kNoCulprit;
  if (n > 1) {
    const tag_t tc = make_tag(o.channel, sequence, kStepChunk);
    struct expected {
      std::size_t tensor;
      std::uint64_t chunk;
      rank_t from;
      std::size_t len;
      std::size_t got;
    };
    std::vector<expected> want;
    for (std::size_t i : pulled)
      for (std::uint64_t c = 0; c < m[me].tensors[i].chunks.size(); ++c) {
        const std::uint64_t off = c * cb;
        want.push_back({i, c, source_of(e, i, c, me),
                        static_cast<std::size_t>(std::min(cb, m[me].tensors[i].bytes - off)), 0});
      }
    // The transfer does not stop at the first failure: a peer that bailed out would leave
    // its senders blocked (and its receivers waiting) until the deadline. Every op that
    // does not involve a failed peer runs to completion; the first error is kept and
    // reported in the outcome round. `down[p]`: an op with p failed; skip p from then on.
    std::vector<std::uint8_t> down(n, 0);
    auto note = [&](const status& st, rank_t peer) {
      down[peer] = 1;
      if (!local.ok()) return;
      if (st.code() == status_code::resource_exhausted) {
        local = data_loss("shared_state: a chunk from " + rank_str(peer) + " is longer than planned");
        culprit = peer;
      } else {
        local = st;
      }
    };
    // Receives all posted first, so every send below has its receive.
    std::vector<op> rops(want.size());
    std::vector<std::uint8_t> rposted(want.size(), 0);
    for (std::size_t k = 0; k < want.size(); ++k) {
      auto& w = want[k];
      if (down[w.from]) continue;
      auto r = t.post_recv(w.from, tc, std::span(slab.get() + offset[w.tensor] + w.chunk * cb, w.len));
      if (r.ok()) {
        rops[k] = *r;
        rposted[k] = 1;
      } else {
        note(r.status(), w.from);
      }
    }
    // Then this peer's sends, at most max_inflight_sends posted at once, in plan order
    // per puller (messages with one tag match in posting order).
    struct inflight {
      op o;
      rank_t to;
    };
    std::vector<inflight> window;
    window.reserve(o.max_inflight_sends);
    auto drain = [&] {
      for (const auto& f : window) {
        auto w = t.wait(f.o, d);
        if (!w.ok()) note(w.status(), f.to);
      }
      window.clear();
    };
    for (std::size_t i = 0; i < nt; ++i) {
      if (!(m[me].tensors[i].hash == e.winner[i]) || m[me].strategy == sync_strategy::receive_only) continue;
      const auto data = state.find(m[me].tensors[i].name)->data;
      for (rank_t p = 0; p < n; ++p) {
        if (p == me || m[p].tensors[i].hash == e.winner[i]) continue;
        for (std::uint64_t c = 0; c < m[me].tensors[i].chunks.size() && !down[p]; ++c) {
          if (source_of(e, i, c, p) != me) continue;
          const std::uint64_t off = c * cb;
          const auto len = static_cast<std::size_t>(std::min(cb, m[me].tensors[i].bytes - off));
          auto s = t.post_send(p, tc, data.subspan(static_cast<std::size_t>(off), len));
          if (!s.ok()) {
            note(s.status(), p);
            break;
          }
          window.push_back({*s, p});
          rep.sent_to[p] += len;
          rep.bytes_sent += len;
          ++rep.chunks_sent;
          if (window.size() == o.max_inflight_sends) drain();
        }
      }
    }
    drain();
    for (std::size_t k = 0; k < want.size(); ++k) {
      if (!rposted[k]) continue;
      auto w = t.wait(rops[k], d);
      if (w.ok())
        want[k].got = *w;
      else
        note(w.status(), want[k].from);
    }
    // 4. Verify every chunk, then every assembled tensor.
    for (std::size_t k = 0; k < want.size() && local.ok(); ++k) {
      const expected& w = want[k];
      const auto& name = m[me].tensors[w.tensor].name;
      const auto& ref = m[e.holders[w.tensor][0]].tensors[w.tensor];
      if (w.got != w.len ||
          !(xxh3_128(std::span(slab.get() + offset[w.tensor] + w.chunk * cb, w.len)) == ref.chunks[w.chunk])) {
        local = data_loss("shared_state: chunk " + std::to_string(w.chunk) + " of tensor " + quoted(name) + " from " +
                          rank_str(w.from) + " does not match the winner's hash");
        culprit = w.from;
      } else {
        rep.received_from[w.from] += w.len;
        rep.bytes_received += w.len;
        ++rep.chunks_received;
      }
    }
    for (std::size_t i : pulled) {
      if (!local.ok()) break;
      const std::span<const std::byte> staged(slab.get() + offset[i], static_cast<std::size_t>(m[me].tensors[i].bytes));
      if (!(xxh3_128(staged) == e.winner[i])) {
        culprit = e.holders[i][0];
        local = data_loss("shared_state: tensor " + quoted(m[me].tensors[i].name) + " assembled from verified chunks " +
                          "does not match the whole hash in the manifest of " + rank_str(culprit));
      }
    }
    // 5. Everyone hears everyone's outcome before anyone commits.
    DTRAIN_RETURN_IF_ERROR(outcome_round(t, make_tag(o.channel, sequence, kStepOutcome), local, culprit, d));
  }

  for (std::size_t i : pulled) {
    const auto dst = state.find(m[me].tensors[i].name)->data;
    if (!dst.empty()) std::copy_n(slab.get() + offset[i], dst.size(), dst.data());
  }
  rep.tensors_pulled = pulled.size();
  state.set_revision(e.revision);
  return rep;
}

}  // namespace dtrain::net
