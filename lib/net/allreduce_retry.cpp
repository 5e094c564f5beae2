// The retry loop around an averager: restore, regroup, rebuild on a fresh channel,
// barrier, redo; the survivor list and a regroup policy over a shared liveness oracle.
#include "dtrain/net/allreduce_retry.h"

#include <algorithm>
#include <string>

namespace dtrain::net {

namespace {

constexpr std::string_view kWho = "allreduce_with_retry";
constexpr std::uint32_t kBarrierSequence = 0xFFFFFFu;  // a fresh averager never reaches it

bool is_group_failure(status_code c) noexcept {
  return c == status_code::aborted || c == status_code::deadline_exceeded || c == status_code::unavailable;
}

status check_options(const retry_options& o) {
  if (o.max_attempts < 1) return invalid_argument(std::string(kWho) + ": max_attempts must be >= 1");
  if (o.min_peers < 1) return invalid_argument(std::string(kWho) + ": min_peers must be >= 1");
  if (o.channel_span < 1) return invalid_argument(std::string(kWho) + ": channel_span must be >= 1");
  if (std::uint64_t{o.channel_base} + o.channel_span > (std::uint64_t{1} << 24))
    return invalid_argument(std::string(kWho) + ": channel_base + channel_span must be <= 2^24");
  if (o.barrier_timeout.count() <= 0) return invalid_argument(std::string(kWho) + ": barrier_timeout must be > 0");
  return ok_status();
}

status too_few(std::size_t have, std::size_t need) {
  return failed_precondition(std::string(kWho) + ": the group has " + std::to_string(have) +
                             " peers, fewer than min_peers = " + std::to_string(need));
}

}  // namespace

std::uint32_t retry_channel(const retry_options& o, std::uint64_t g) noexcept {
  const std::uint32_t span = o.channel_span == 0 ? 1 : o.channel_span;
  return o.channel_base + static_cast<std::uint32_t>(g % span);
}

// ---- retrying_allreduce ---------------------------------------------------------------

retrying_allreduce::retrying_allreduce(transport& first, make_averager_fn make, regroup_fn regroup,
                                       const retry_options& o, std::uint64_t generation)
    : opts_(o), make_(std::move(make)), regroup_(std::move(regroup)), group_(&first), generation_(generation) {}

retrying_allreduce::~retrying_allreduce() = default;

result<std::unique_ptr<retrying_allreduce>> retrying_allreduce::create(transport& first, make_averager_fn make,
                                                                       regroup_fn regroup, const retry_options& o,
                                                                       std::uint64_t first_generation) {
  DTRAIN_RETURN_IF_ERROR(check_options(o));
  if (!make || !regroup) return invalid_argument(std::string(kWho) + ": make and regroup must be set");
  if (first.size() < o.min_peers) return too_few(first.size(), o.min_peers);
  std::unique_ptr<retrying_allreduce> r(
      new retrying_allreduce(first, std::move(make), std::move(regroup), o, first_generation));
  DTRAIN_RETURN_IF_ERROR(r->rebuild());
  r->backup_.resize(r->avg_->count());
  return r;
}

status retrying_allreduce::rebuild() {
  auto a = make_(*group_, retry_attempt{retry_channel(opts_, generation_), generation_});
  if (!a.ok()) return a.status();
  if (!*a) return invalid_argument(std::string(kWho) + ": make returned no averager");
  if (!backup_.empty() && (*a)->count() != backup_.size())
    return invalid_argument(std::string(kWho) + ": make built an averager of " + std::to_string((*a)->count()) +
                            " floats, expected " + std::to_string(backup_.size()));
  avg_ = std::move(*a);
  return ok_status();
}

status retrying_allreduce::barrier() {
  transport& t = *group_;
  const std::size_t n = t.size();
  const rank_t me = t.rank();
  if (n <= 1) return ok_status();
  const tag_t tag = make_tag(retry_channel(opts_, generation_), kBarrierSequence, 0);
  const deadline d = after(opts_.barrier_timeout);
  // One byte to and from every member. Allocates n bytes and 2n handles: barriers run
  // only after a failure.
  std::vector<std::byte> in(n);
  const std::byte out[1] = {std::byte{0xBA}};
  std::vector<op> ops;
  ops.reserve(2 * n);
  status st;
  for (rank_t p = 0; p < n && st.ok(); ++p) {
    if (p == me) continue;
    auto o = t.post_recv(p, tag, std::span(in).subspan(p, 1));
    if (o.ok()) ops.push_back(*o); else st = o.status();
  }
  for (rank_t p = 0; p < n && st.ok(); ++p) {
    if (p == me) continue;
    auto o = t.post_send(p, tag, out);
    if (o.ok()) ops.push_back(*o); else st = o.status();
  }
  for (const op& o : ops) {
    auto r = t.wait(o, st.ok() ? d : deadline::min());  // after an error: retire the rest at once
    if (!r.ok() && st.ok()) st = r.status();
  }
  return st;
}

status retrying_allreduce::run(std::span<float> data, std::uint64_t round) {
  report_ = retry_report{};
  report_.generation = generation_;
  // Without an averager the group may be gone too (a regroup that failed after dropping
  // the old view): touch neither.
  if (!avg_)
    return failed_precondition(std::string(kWho) +
                               ": no usable group (an earlier regroup or make failed, or the group was too small); "
                               "call regroup_to()");
  report_.final_peers = group_->size();
  if (data.size() != backup_.size())
    return invalid_argument(std::string(kWho) + ": data holds " + std::to_string(data.size()) +
                            " floats, expected " + std::to_string(backup_.size()));
  std::copy(data.begin(), data.end(), backup_.begin());

  for (int attempt = 0;; ++attempt) {
    report_.attempts = attempt + 1;
    status st = needs_barrier_ ? barrier() : ok_status();
    if (st.ok()) st = avg_->average(data, round);
    if (st.ok()) {
      needs_barrier_ = false;
      report_.average = avg_->last_report();
      return st;
    }
    // The averagers already leave data unchanged on error; restoring from the copy keeps
    // the guarantee for any averager make() may return.
    std::copy(backup_.begin(), backup_.end(), data.begin());
    report_.failures.push_back(st);
    if (!is_group_failure(st.code())) return st;

    // Regroup even when no attempt is left, so the next run() starts on the survivors.
    avg_.reset();
    group_->reset();
    auto next = regroup_(st);
    if (!next.ok()) return next.status();
    if (*next == nullptr) return invalid_argument(std::string(kWho) + ": regroup returned no transport");
    group_ = *next;
    ++generation_;
    needs_barrier_ = true;
    report_.generation = generation_;
    report_.final_peers = group_->size();
    if (group_->size() < opts_.min_peers) return too_few(group_->size(), opts_.min_peers);
    DTRAIN_RETURN_IF_ERROR(rebuild());
    if (attempt + 1 >= opts_.max_attempts) return st;
  }
}

status retrying_allreduce::regroup_to(transport& t) {
  avg_.reset();
  group_ = &t;
  ++generation_;
  report_ = retry_report{};
  report_.generation = generation_;
  report_.final_peers = t.size();
  if (t.size() < opts_.min_peers) return too_few(t.size(), opts_.min_peers);
  return rebuild();
}

result<retry_report> allreduce_with_retry(std::span<float> data, std::uint64_t round, make_averager_fn make,
                                          regroup_fn regroup, transport& first, const retry_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_options(o));
  auto r = retrying_allreduce::create(first, std::move(make), std::move(regroup), o,
                                      round * static_cast<std::uint64_t>(o.max_attempts));
  if (!r.ok()) return r.status();
  DTRAIN_RETURN_IF_ERROR((*r)->run(data, round));
  return (*r)->last_report();
}

// ---- survivors ------------------------------------------------------------------------

result<std::vector<rank_t>> surviving_members(std::span<const rank_t> members, rank_t self,
                                              const std::function<bool(rank_t)>& alive) {
  if (std::find(members.begin(), members.end(), self) == members.end())
    return invalid_argument("surviving_members: rank " + std::to_string(self) + " is not a member");
  if (!alive(self))
    return failed_precondition("surviving_members: this peer (rank " + std::to_string(self) +
                               ") is no longer alive; it must leave the group");
  std::vector<rank_t> out;
  out.reserve(members.size());
  for (rank_t m : members)
    if (alive(m)) out.push_back(m);
  return out;
}

survivor_group::survivor_group(transport& inner, std::vector<rank_t> members, std::function<bool(rank_t)> alive,
                               std::unique_ptr<group_transport> view)
    : inner_(inner), members_(std::move(members)), alive_(std::move(alive)), view_(std::move(view)) {}

result<std::unique_ptr<survivor_group>> survivor_group::create(transport& inner, std::vector<rank_t> members,
                                                               std::function<bool(rank_t)> alive) {
  if (!alive) return invalid_argument("survivor_group: no liveness oracle");
  auto v = group_transport::create(inner, members);
  if (!v.ok()) return v.status();
  return std::unique_ptr<survivor_group>(
      new survivor_group(inner, std::move(members), std::move(alive), std::move(*v)));
}

result<transport*> survivor_group::operator()(const status& /*why*/) {
  auto s = surviving_members(members_, inner_.rank(), alive_);
  if (!s.ok()) return s.status();
  auto v = group_transport::create(inner_, *s);
  if (!v.ok()) return v.status();
  members_ = std::move(*s);
  old_ = std::move(view_);
  view_ = std::move(*v);
  return static_cast<transport*>(view_.get());
}

}  // namespace dtrain::net
