// The origin publisher: exact layout (manifest and chunk bytes, nothing else), a reader
// polling during 20 publishes never sees a partial version, retention, explicit
// versions, tensors, and reopening after a crash left temp dirs or an unannounced
// version behind. Also the layout helpers (parse_latest, paths).
#include "dtrain/shard/origin.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "common/test_bytes.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "common/test_bytes.h"
#include "shard/nginx_util.h"

using namespace dtrain;
using namespace dtrain::shard;
namespace fs = std::filesystem;
using dtrain::test::read_bytes;
using dtrain::test::temp_dir;

namespace {


void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

crypto::identity test_key(std::uint8_t seed) {
  std::vector<std::byte> s(32, std::byte{seed});
  return crypto::identity::from_seed(s).value();
}

publisher_options options(const fs::path& root, std::size_t keep = 5) {
  encode_options enc;
  enc.chunk_size = 1000;
  enc.k = 4;
  enc.m = 2;
  enc.created_unix = 1700000000;
  return publisher_options{root, test_key(1), keep, enc};
}

std::vector<std::byte> content_of(std::uint64_t version) {
  return dtrain::test::random_bytes(3000 + version * 517, version);
}

}  // namespace

TEST_CASE("layout: latest file and paths") {
  auto bytes = [](std::string_view s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); };
  CHECK(parse_latest(bytes("1\n")).value() == 1);
  CHECK(parse_latest(bytes("18446744073709551615\n")).value() == UINT64_MAX);
  for (std::string_view bad : {"", "\n", "0\n", "01\n", "1", "1\n\n", " 1\n", "1 \n", "-1\n", "18446744073709551616\n",
                               "x\n", "123456789012345678901\n"}) {
    CAPTURE(bad);
    CHECK(parse_latest(bytes(bad)).status().code() == status_code::data_loss);
  }
  CHECK(format_latest(42) == "42\n");
  CHECK(layout_manifest_path(7) == "v7/manifest");
  CHECK(layout_chunk_path(7, 12) == "v7/chunk/12");
  CHECK(layout_url("http://h:1/", "/latest") == "http://h:1/latest");
  CHECK(layout_url("http://h:1/a", "v1/manifest") == "http://h:1/a/v1/manifest");
}

TEST_CASE("origin: the layout is exact") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  auto pub = publisher::create(options(root)).value();
  CHECK(pub.latest() == 0);
  const auto data = content_of(1);
  REQUIRE(pub.publish(data).value() == 1);
  CHECK(pub.latest() == 1);

  encode_options enc = options(root).encoding;
  enc.version = 1;
  const auto expected = encode(data, enc).value();
  const auto expected_manifest = sign_manifest(expected.man, test_key(1)).value();

  CHECK(names_in(root) == std::set<std::string>{"latest", "v1"});
  CHECK(names_in(root / "v1") == std::set<std::string>{"chunk", "manifest"});
  CHECK(read_bytes(root / "latest").value() == std::vector<std::byte>{std::byte{'1'}, std::byte{'\n'}});
  CHECK(read_bytes(root / "v1" / "manifest").value() == expected_manifest);
  std::set<std::string> chunk_names;
  for (std::size_t i = 0; i < expected.man.total_chunks(); ++i) {
    chunk_names.insert(std::to_string(i));
    const auto c = expected.chunk(i);
    CHECK(read_bytes(root / "v1" / "chunk" / std::to_string(i)).value() == std::vector<std::byte>(c.begin(), c.end()));
  }
  CHECK(names_in(root / "v1" / "chunk") == chunk_names);
  CHECK(expected.man.parity.size() > 0);

  // The published manifest opens under the origin's key only.
  const std::vector<crypto::peer_id> trusted{test_key(1).id()};
  CHECK(open_manifest(expected_manifest, trusted).ok());
  const std::vector<crypto::peer_id> other{test_key(2).id()};
  CHECK(open_manifest(expected_manifest, other).status().code() == status_code::permission_denied);

  REQUIRE(pub.publish(content_of(2)).value() == 2);
  CHECK(names_in(root) == std::set<std::string>{"latest", "v1", "v2"});
  CHECK(read_latest(root).value() == 2);
}

TEST_CASE("origin: a reader polling during publishes never sees a partial version") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  // keep_versions above the publish count: nothing is pruned, so any missing file or
  // failed check is a partial version.
  auto pub = publisher::create(options(root, 25)).value();
  const std::vector<crypto::peer_id> trusted{pub.origin_id()};
  std::atomic<bool> done{false};
  std::atomic<int> checked{0};
  std::atomic<int> failures{0};
  std::string first_failure;

  std::thread reader([&] {
    auto fail = [&](const std::string& why) {
      if (failures.fetch_add(1) == 0) first_failure = why;
    };
    while (!done.load()) {
      auto latest = read_latest(root);
      if (!latest.ok()) {
        fail("latest: " + latest.status().to_string());
        continue;
      }
      const std::uint64_t v = *latest;
      if (v == 0) continue;
      const fs::path vdir = root / ("v" + std::to_string(v));
      auto mbytes = read_bytes(vdir / "manifest");
      if (!mbytes) {
        fail("v" + std::to_string(v) + " has no manifest");
        continue;
      }
      auto man = open_manifest(*mbytes, trusted);
      if (!man.ok() || man->version != v) {
        fail("v" + std::to_string(v) + " manifest: " + man.status().to_string());
        continue;
      }
      std::vector<std::byte> out(man->total_size);
      auto dec = decoder::create(*man, out).value();
      for (std::size_t i = 0; i < man->total_chunks(); ++i) {
        auto c = read_bytes(vdir / "chunk" / std::to_string(i));
        if (!c) {
          fail("v" + std::to_string(v) + " chunk " + std::to_string(i) + " missing");
          break;
        }
        if (status st = dec.add_chunk(i, *c); !st.ok()) {
          fail("v" + std::to_string(v) + " chunk " + std::to_string(i) + ": " + st.to_string());
          break;
        }
      }
      if (!dec.complete() || out != content_of(v)) {
        fail("v" + std::to_string(v) + " content differs");
        continue;
      }
      checked.fetch_add(1);
    }
  });
  for (std::uint64_t v = 1; v <= 20; ++v) {
    auto r = pub.publish(content_of(v));
    REQUIRE(r.ok());
    CHECK(*r == v);
  }
  // Let the reader check the last version at least once.
  for (int i = 0; i < 2000 && checked.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  done.store(true);
  reader.join();
  INFO(first_failure);
  CHECK(failures.load() == 0);
  CHECK(checked.load() > 0);
  CHECK(list_versions(root).value().size() == 20);
}

TEST_CASE("origin: retention keeps the newest versions") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  const std::size_t keep = GENERATE(1u, 3u);
  CAPTURE(keep);
  auto pub = publisher::create(options(root, keep)).value();
  for (std::uint64_t v = 1; v <= 6; ++v) REQUIRE(pub.publish(content_of(v)).ok());
  std::vector<std::uint64_t> want;
  for (std::uint64_t v = 7 - keep; v <= 6; ++v) want.push_back(v);
  CHECK(list_versions(root).value() == want);
  CHECK(read_latest(root).value() == 6);
}

TEST_CASE("origin: explicit versions and tensors") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  auto pub = publisher::create(options(root)).value();
  CHECK(pub.publish(content_of(1), 0).status().code() == status_code::invalid_argument);
  REQUIRE(pub.publish(content_of(10), 10).value() == 10);
  CHECK(pub.publish(content_of(5), 5).status().code() == status_code::failed_precondition);
  CHECK(pub.publish(content_of(10), 10).status().code() == status_code::failed_precondition);
  CHECK(pub.latest() == 10);
  CHECK(names_in(root) == std::set<std::string>{"latest", "v10"});

  std::vector<tensor_desc> tensors = {make_tensor("emb", dtype::f32, {100, 8}), make_tensor("bias", dtype::f32, {8})};
  const auto bytes = dtrain::test::random_bytes(100 * 8 * 4 + 8 * 4, 9);
  REQUIRE(pub.publish_tensors(tensors, bytes).value() == 11);
  const auto man = open_manifest(read_bytes(root / "v11" / "manifest").value(), {}).value();
  REQUIRE(man.tensors.size() == 2);
  CHECK(man.tensors[0].name == "emb");
  CHECK(man.tensors[1].offset == 3200);
  CHECK(man.version == 11);

  // Bad encoding options: nothing written.
  auto bad = options(dir.path() / "bad");
  bad.encoding.chunk_size = 0;
  auto p2 = publisher::create(bad).value();
  CHECK(p2.publish(content_of(1)).status().code() == status_code::invalid_argument);
  CHECK(names_in(dir.path() / "bad").empty());
  auto zero = options(dir.path() / "zero", 0);
  CHECK(publisher::create(zero).status().code() == status_code::invalid_argument);
}

TEST_CASE("origin: a version published from a stream equals the one published whole") {
  temp_dir dir;
  const fs::path whole_root = dir.path() / "whole";
  const fs::path stream_root = dir.path() / "stream";
  auto whole = publisher::create(options(whole_root)).value();
  auto streamed = publisher::create(options(stream_root)).value();
  for (std::uint64_t v = 1; v <= 2; ++v) {
    CAPTURE(v);
    const auto bytes = content_of(v * 7);
    REQUIRE(whole.publish(bytes).value() == v);
    auto p = streamed.begin(bytes.size());
    REQUIRE(p.ok());
    CHECK(p->version() == v);
    // In uneven pieces, as a trainer serialises tensors.
    for (std::size_t at = 0, step = 1; at < bytes.size(); at += step, step = step * 3 + 1)
      REQUIRE(p->write(std::span(bytes).subspan(at, std::min(step, bytes.size() - at))).ok());
    REQUIRE(p->commit().value() == v);
    CHECK(streamed.latest() == v);
    const std::string vd = "v" + std::to_string(v);
    CHECK(read_bytes(stream_root / vd / "manifest") == read_bytes(whole_root / vd / "manifest"));
    const auto man = open_manifest(read_bytes(stream_root / vd / "manifest").value(), {}).value();
    for (std::size_t i = 0; i < man.total_chunks(); ++i) {
      const std::string c = "chunk/" + std::to_string(i);
      CHECK(read_bytes(stream_root / vd / c) == read_bytes(whole_root / vd / c));
    }
    CHECK(p->commit().status().code() == status_code::failed_precondition);  // once only
  }
  // Tensors.
  std::vector<tensor_desc> tensors = {make_tensor("emb", dtype::f32, {100, 8}), make_tensor("bias", dtype::f32, {8})};
  const auto tbytes = dtrain::test::random_bytes(100 * 8 * 4 + 8 * 4, 9);
  REQUIRE(whole.publish_tensors(tensors, tbytes).value() == 3);
  auto tp = streamed.begin_tensors(tensors);
  REQUIRE(tp.ok());
  REQUIRE(tp->write(std::span(tbytes).first(1000)).ok());
  REQUIRE(tp->write(std::span(tbytes).subspan(1000)).ok());
  REQUIRE(tp->commit().value() == 3);
  CHECK(read_bytes(stream_root / "v3" / "manifest") == read_bytes(whole_root / "v3" / "manifest"));
}

TEST_CASE("origin: an abandoned or failed streamed version publishes nothing") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  auto pub = publisher::create(options(root)).value();
  REQUIRE(pub.publish(content_of(1)).value() == 1);
  const auto before = names_in(root);
  const auto bytes = content_of(2);
  {
    auto p = pub.begin(bytes.size()).value();
    REQUIRE(p.write(std::span(bytes).first(2500)).ok());  // some chunk files written
  }  // dropped without commit()
  CHECK(names_in(root) == before);
  {
    auto p = pub.begin(bytes.size()).value();
    REQUIRE(p.write(std::span(bytes).first(100)).ok());
    CHECK(p.commit().status().code() == status_code::failed_precondition);  // bytes missing
    CHECK(p.write(bytes).code() == status_code::failed_precondition);        // ended
  }
  {
    auto p = pub.begin(bytes.size()).value();
    CHECK(p.write(content_of(3)).code() == status_code::out_of_range);  // more than announced
    CHECK(p.commit().status().code() == status_code::failed_precondition);
  }
  CHECK(names_in(root) == before);
  CHECK(pub.latest() == 1);
  // The publisher goes on as usual.
  REQUIRE(pub.publish(bytes).value() == 2);
}

TEST_CASE("origin: delta_from_previous, and a streamed version in between goes out in full") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  auto o = options(root);
  o.delta_from_previous = true;
  auto pub = publisher::create(o).value();
  auto bytes = content_of(1);
  const auto man_of = [&](std::uint64_t v) {
    return open_manifest(read_bytes(root / ("v" + std::to_string(v)) / "manifest").value(), {}).value();
  };
  const auto step = [&] {
    for (std::size_t i = 0; i < bytes.size(); i += 101) bytes[i] ^= std::byte{3};
  };
  REQUIRE(pub.publish(bytes).value() == 1);
  step();
  REQUIRE(pub.publish(bytes).value() == 2);
  CHECK(man_of(1).delta == delta_codec::none);
  CHECK(man_of(2).delta == delta_codec::xor_zstd);
  CHECK(man_of(2).delta_base == 1);
  step();
  auto p = pub.begin(bytes.size()).value();
  REQUIRE(p.write(bytes).ok());
  REQUIRE(p.commit().value() == 3);
  CHECK(man_of(3).delta == delta_codec::none);
  step();
  REQUIRE(pub.publish(bytes).value() == 4);
  CHECK(man_of(4).delta == delta_codec::none);  // the streamed bytes were not kept
  step();
  REQUIRE(pub.publish(bytes).value() == 5);
  CHECK(man_of(5).delta_base == 4);
}

TEST_CASE("origin: reopening after a crash") {
  temp_dir dir;
  const fs::path root = dir.path() / "origin";
  {
    auto pub = publisher::create(options(root)).value();
    REQUIRE(pub.publish(content_of(1)).ok());
    REQUIRE(pub.publish(content_of(2)).ok());
  }
  // A crash mid-publish leaves a temp version dir and a temp latest; a crash between
  // rename and `latest` leaves a complete but unannounced v3.
  write_text(root / ".tmp-v3-0123456789abcdef" / "chunk" / "0", "partial");
  write_text(root / ".tmp-latest-0123456789abcdef", "3\n");
  fs::create_directories(root / "v3" / "chunk");

  auto pub = publisher::create(options(root)).value();
  CHECK(pub.latest() == 2);
  CHECK(names_in(root) == std::set<std::string>{"latest", "v1", "v2", "v3"});
  CHECK(pub.publish(content_of(4)).value() == 4);  // never reuses v3
  CHECK(read_latest(root).value() == 4);

  write_text(root / "latest", "garbage");
  CHECK(publisher::create(options(root)).status().code() == status_code::data_loss);
}
