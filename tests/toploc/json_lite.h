// tests/toploc/json_lite.h: a minimal JSON reader for the test vectors (objects, arrays,
// strings without escapes beyond \" and \\, numbers, true/false/null). Tests only; throws
// std::runtime_error on malformed input, which Catch2 reports as a failure.
#pragma once

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dtrain::test {

struct json {
  enum class kind { null, boolean, number, string, array, object } type = kind::null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<json> items;
  std::map<std::string, json> fields;

  const json& operator[](const std::string& key) const {
    const auto it = fields.find(key);
    if (type != kind::object || it == fields.end()) throw std::runtime_error("json: no key " + key);
    return it->second;
  }
  const json& operator[](std::size_t i) const {
    if (type != kind::array || i >= items.size()) throw std::runtime_error("json: bad index");
    return items[i];
  }
  bool has(const std::string& key) const { return type == kind::object && fields.count(key) != 0; }
  std::size_t size() const { return type == kind::array ? items.size() : fields.size(); }

  static json parse(const std::string& text) {
    std::size_t at = 0;
    json v = value(text, at);
    skip(text, at);
    if (at != text.size()) throw std::runtime_error("json: trailing characters");
    return v;
  }

 private:
  static void skip(const std::string& t, std::size_t& at) {
    while (at < t.size() && (t[at] == ' ' || t[at] == '\n' || t[at] == '\r' || t[at] == '\t')) ++at;
  }
  static void expect(const std::string& t, std::size_t& at, char c) {
    skip(t, at);
    if (at >= t.size() || t[at] != c) throw std::runtime_error(std::string("json: expected ") + c);
    ++at;
  }
  static std::string string_at(const std::string& t, std::size_t& at) {
    expect(t, at, '"');
    std::string s;
    while (at < t.size() && t[at] != '"') {
      if (t[at] == '\\' && at + 1 < t.size()) ++at;
      s += t[at++];
    }
    expect(t, at, '"');
    return s;
  }
  static json value(const std::string& t, std::size_t& at) {
    skip(t, at);
    if (at >= t.size()) throw std::runtime_error("json: unexpected end");
    json v;
    const char c = t[at];
    if (c == '{') {
      v.type = kind::object;
      ++at;
      skip(t, at);
      if (t[at] == '}') return ++at, v;
      for (;;) {
        std::string key = string_at(t, at);
        expect(t, at, ':');
        v.fields[key] = value(t, at);
        skip(t, at);
        if (t[at] == ',') { ++at; continue; }
        expect(t, at, '}');
        return v;
      }
    }
    if (c == '[') {
      v.type = kind::array;
      ++at;
      skip(t, at);
      if (t[at] == ']') return ++at, v;
      for (;;) {
        v.items.push_back(value(t, at));
        skip(t, at);
        if (t[at] == ',') { ++at; continue; }
        expect(t, at, ']');
        return v;
      }
    }
    if (c == '"') {
      v.type = kind::string;
      v.str = string_at(t, at);
      return v;
    }
    if (t.compare(at, 4, "true") == 0) { at += 4; v.type = kind::boolean; v.b = true; return v; }
    if (t.compare(at, 5, "false") == 0) { at += 5; v.type = kind::boolean; return v; }
    if (t.compare(at, 4, "null") == 0) { at += 4; return v; }
    char* end = nullptr;
    v.num = std::strtod(t.c_str() + at, &end);
    if (end == t.c_str() + at) throw std::runtime_error("json: bad value");
    v.type = kind::number;
    at = static_cast<std::size_t>(end - t.c_str());
    return v;
  }
};

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace dtrain::test
