// http.cpp: http_fetcher on libcurl's multi interface. One easy handle per running
// transfer (pooled), one multi handle whose connection cache keeps HTTP/1.1 connections
// alive across requests to the same host.
#include "dtrain/shard/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace dtrain::shard {

namespace {

using clock_type = std::chrono::steady_clock;

// Largest buffer reserved up front from a Content-Length or range; beyond it the body
// grows as bytes arrive, so a lying header cannot make us allocate what never comes.
constexpr std::uint64_t max_reserve = std::uint64_t{64} << 20;

CURLcode global_init_code() {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return code;
}

enum class body_error : std::uint8_t { none, too_long, range_mismatch };

}  // namespace

struct http_fetcher::impl {
  struct transfer {
    std::uint64_t id = 0;
    http_request req;
    CURL* easy = nullptr;
    std::vector<std::byte> body;
    std::uint64_t received = 0;  // body bytes so far (in body, or in req.into)
    body_error berr = body_error::none;
    bool checked_headers = false;
    clock_type::time_point began{};
    char errbuf[CURL_ERROR_SIZE] = {};
  };

  CURLM* multi = nullptr;
  std::size_t max_parallel = 1;
  std::uint64_t next_id = 1;
  std::deque<std::unique_ptr<transfer>> queued;
  std::unordered_map<std::uint64_t, std::unique_ptr<transfer>> running;
  std::vector<CURL*> idle_handles;
  std::vector<http_result> done;

  ~impl() {
    for (auto& [id, t] : running) {
      curl_multi_remove_handle(multi, t->easy);
      curl_easy_cleanup(t->easy);
    }
    for (CURL* e : idle_handles) curl_easy_cleanup(e);
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  static std::size_t on_write(char* data, std::size_t size, std::size_t nmemb, void* user) {
    auto* t = static_cast<transfer*>(user);
    const std::size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 && code != 206) return n;  // error bodies are read and dropped
    if (!t->checked_headers) {
      t->checked_headers = true;
      curl_off_t cl = -1;
      curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
      const std::uint64_t cap = t->req.into.empty() ? t->req.max_bytes
                                                    : std::min<std::uint64_t>(t->req.max_bytes, t->req.into.size());
      if (cl >= 0 && static_cast<std::uint64_t>(cl) > cap) {
        t->berr = body_error::too_long;
        return 0;  // aborts with CURLE_WRITE_ERROR
      }
      std::uint64_t want = cl >= 0 ? static_cast<std::uint64_t>(cl) : 0;
      if (t->req.range) want = std::min(want == 0 ? t->req.range->length : want, t->req.range->length);
      if (t->req.into.empty()) t->body.reserve(static_cast<std::size_t>(std::min({want, t->req.max_bytes, max_reserve})));
    }
    const std::uint64_t after = t->received + std::uint64_t{n};
    if (after > t->req.max_bytes || (!t->req.into.empty() && after > t->req.into.size())) {
      t->berr = body_error::too_long;
      return 0;
    }
    if (t->req.range && after > t->req.range->length) {
      t->berr = body_error::range_mismatch;  // e.g. a 200 with the whole file: stop reading it
      return 0;
    }
    const auto* p = reinterpret_cast<const std::byte*>(data);
    if (t->req.into.empty()) {
      t->body.insert(t->body.end(), p, p + n);
    } else {
      std::memcpy(t->req.into.data() + t->received, p, n);
    }
    t->received = after;
    return n;
  }

  CURL* take_handle() {
    if (!idle_handles.empty()) {
      CURL* e = idle_handles.back();
      idle_handles.pop_back();
      return e;
    }
    return curl_easy_init();
  }

  // Reset now, so an idle handle holds no pointer into a finished transfer.
  void release_handle(CURL* e) {
    curl_easy_reset(e);
    idle_handles.push_back(e);
  }

  void finish(std::unique_ptr<transfer> t, status st, long http_status) {
    http_result r;
    r.id = t->id;
    r.st = std::move(st);
    r.http_status = http_status;
    if (r.st.ok()) {
      r.body = std::move(t->body);
      r.body_size = t->received;
    }
    if (t->began != clock_type::time_point{}) {
      r.seconds = std::chrono::duration<double>(clock_type::now() - t->began).count();
    }
    done.push_back(std::move(r));
  }

  // Starts queued transfers while slots are free. A request that cannot even be set up
  // completes at once with its error.
  void dispatch() {
    while (running.size() < max_parallel && !queued.empty()) {
      std::unique_ptr<transfer> t = std::move(queued.front());
      queued.pop_front();
      t->began = clock_type::now();
      if (t->req.range && t->req.range->length == 0) {
        finish(std::move(t), invalid_argument("http: a byte range of length 0"), 0);
        continue;
      }
      if (t->req.range && t->req.range->first > UINT64_MAX - t->req.range->length) {
        finish(std::move(t), invalid_argument("http: byte range past 2^64"), 0);
        continue;
      }
      CURL* e = take_handle();
      if (e == nullptr) {
        finish(std::move(t), resource_exhausted("http: curl_easy_init failed"), 0);
        continue;
      }
      t->easy = e;
      curl_easy_setopt(e, CURLOPT_URL, t->req.url.c_str());
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
      curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
      curl_easy_setopt(e, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(1, t->req.timeout.count())));
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                       static_cast<long>(std::max<std::int64_t>(1, t->req.connect_timeout.count())));
      curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024L);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &impl::on_write);
      curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
      curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
      curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
      std::string range_text;
      if (t->req.range) {
        range_text = std::to_string(t->req.range->first) + "-" +
                     std::to_string(t->req.range->first + t->req.range->length - 1);
        curl_easy_setopt(e, CURLOPT_RANGE, range_text.c_str());  // libcurl copies strings
      }
      if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        t->easy = nullptr;
        release_handle(e);
        finish(std::move(t), internal_error("http: curl_multi_add_handle failed"), 0);
        continue;
      }
      const std::uint64_t id = t->id;
      running.emplace(id, std::move(t));
    }
  }

  static status map_curl_error(const transfer& t, CURLcode rc) {
    std::string what = t.req.url + ": " + (t.errbuf[0] != '\0' ? std::string(t.errbuf) : curl_easy_strerror(rc));
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT: return {status_code::deadline_exceeded, std::move(what)};
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL: return invalid_argument(std::move(what));
      case CURLE_OUT_OF_MEMORY: return resource_exhausted(std::move(what));
      case CURLE_WRITE_ERROR:
        if (t.berr == body_error::too_long) {
          const std::uint64_t cap =
              t.req.into.empty() ? t.req.max_bytes : std::min<std::uint64_t>(t.req.max_bytes, t.req.into.size());
          return data_loss(t.req.url + ": body longer than max_bytes (" + std::to_string(cap) + ")");
        }
        if (t.berr == body_error::range_mismatch) {
          return data_loss(t.req.url + ": response longer than the requested range");
        }
        return unavailable(std::move(what));
      default: return unavailable(std::move(what));  // refused, reset, DNS, truncated body, ...
    }
  }

  static status map_http(const transfer& t, long code) {
    const std::string where = t.req.url + ": HTTP " + std::to_string(code);
    if (t.req.range) {
      if (code == 206) {
        if (t.received != t.req.range->length) {
          return data_loss(where + " with " + std::to_string(t.received) + " bytes for a range of " +
                           std::to_string(t.req.range->length));
        }
        return ok_status();
      }
      if (code == 200) return data_loss(where + ": the server ignored the range");
    } else {
      if (code == 200) return ok_status();
      if (code == 206) return data_loss(where + " to a request without a range");
    }
    if (code == 416) return out_of_range(where + " (range not satisfiable)");
    if (code >= 300 && code < 400) return unavailable(where + " (redirects are not followed)");
    return unavailable(where);
  }

  void collect() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      char* priv = nullptr;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
      auto* tp = reinterpret_cast<transfer*>(priv);
      auto it = running.find(tp->id);
      DTRAIN_ASSERT(it != running.end());
      std::unique_ptr<transfer> t = std::move(it->second);
      running.erase(it);
      long code = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
      curl_multi_remove_handle(multi, e);
      t->easy = nullptr;
      status st = rc == CURLE_OK ? map_http(*t, code) : map_curl_error(*t, rc);
      release_handle(e);
      finish(std::move(t), std::move(st), code);
    }
  }

  // One round of work: start what can start, let libcurl move bytes, collect completions.
  void step() {
    dispatch();
    int still = 0;
    curl_multi_perform(multi, &still);
    collect();
    dispatch();  // slots freed by completions
  }
};

http_fetcher::http_fetcher(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
http_fetcher::http_fetcher(http_fetcher&&) noexcept = default;
http_fetcher& http_fetcher::operator=(http_fetcher&&) noexcept = default;
http_fetcher::~http_fetcher() = default;

result<http_fetcher> http_fetcher::create(std::size_t max_parallel) {
  if (const CURLcode rc = global_init_code(); rc != CURLE_OK) {
    return internal_error(std::string("http: curl_global_init failed: ") + curl_easy_strerror(rc));
  }
  auto p = std::make_unique<impl>();
  p->multi = curl_multi_init();
  if (p->multi == nullptr) return internal_error("http: curl_multi_init failed");
  p->max_parallel = std::max<std::size_t>(1, max_parallel);
  // Keep enough idle connections for every slot so keep-alive survives bursts.
  curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, static_cast<long>(std::max<std::size_t>(p->max_parallel, 8)));
  return http_fetcher(std::move(p));
}

std::uint64_t http_fetcher::start(http_request req) {
  DTRAIN_ASSERT(impl_ && "use of a moved-from http_fetcher");
  auto t = std::make_unique<impl::transfer>();
  t->id = impl_->next_id++;
  t->req = std::move(req);
  const std::uint64_t id = t->id;
  impl_->queued.push_back(std::move(t));
  return id;
}

void http_fetcher::cancel(std::uint64_t id) {
  DTRAIN_ASSERT(impl_ && "use of a moved-from http_fetcher");
  auto& q = impl_->queued;
  if (auto it = std::find_if(q.begin(), q.end(), [id](const auto& t) { return t->id == id; }); it != q.end()) {
    std::unique_ptr<impl::transfer> t = std::move(*it);
    q.erase(it);
    impl_->finish(std::move(t), status{status_code::cancelled, "http: cancelled"}, 0);
    return;
  }
  if (auto it = impl_->running.find(id); it != impl_->running.end()) {
    std::unique_ptr<impl::transfer> t = std::move(it->second);
    impl_->running.erase(it);
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(impl_->multi, t->easy);
    impl_->release_handle(t->easy);
    t->easy = nullptr;
    impl_->finish(std::move(t), status{status_code::cancelled, "http: cancelled"}, code);
  }
}

std::vector<http_result> http_fetcher::poll(std::chrono::milliseconds wait) {
  DTRAIN_ASSERT(impl_ && "use of a moved-from http_fetcher");
  const auto deadline = clock_type::now() + wait;
  for (;;) {
    impl_->step();
    if (!impl_->done.empty() || (impl_->running.empty() && impl_->queued.empty())) break;
    const auto now = clock_type::now();
    if (now >= deadline) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    curl_multi_poll(impl_->multi, nullptr, 0, static_cast<int>(std::clamp<std::int64_t>(left, 1, 1000)), nullptr);
  }
  return std::exchange(impl_->done, {});
}

std::size_t http_fetcher::in_flight() const noexcept {
  if (!impl_) return 0;
  return impl_->queued.size() + impl_->running.size() + impl_->done.size();
}

result<http_result> http_fetcher::get(http_request req) {
  DTRAIN_ASSERT(impl_ && "use of a moved-from http_fetcher");
  const std::uint64_t id = start(std::move(req));
  for (;;) {
    auto& d = impl_->done;
    if (auto it = std::find_if(d.begin(), d.end(), [id](const http_result& r) { return r.id == id; }); it != d.end()) {
      http_result r = std::move(*it);
      d.erase(it);
      return r;
    }
    impl_->step();
    if (std::any_of(d.begin(), d.end(), [id](const http_result& r) { return r.id == id; })) continue;
    if (impl_->running.empty() && impl_->queued.empty()) {
      return internal_error("http: request " + std::to_string(id) + " vanished");
    }
    curl_multi_poll(impl_->multi, nullptr, 0, 100, nullptr);
  }
}

}  // namespace dtrain::shard
