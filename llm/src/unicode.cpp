// UTF-8 and byte-level BPE's byte map.
#include <array>

#include "llm/tokenizer.h"

namespace llm {

namespace {
// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100.. in byte order, so every byte has a visible char.
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};
  ByteMap() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? (uint32_t)b : next++;
      to_byte[to_cp[b]] = (int16_t)b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return byte_map().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) { return cp < 324 ? byte_map().to_byte[cp] : -1; }

size_t utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;  // continuation or invalid byte: a unit of its own
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else if (cp < 0x800) {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += (char)(0xE0 | (cp >> 12));
    s += (char)(0x80 | ((cp >> 6) & 0x3F));
    s += (char)(0x80 | (cp & 0x3F));
  } else {
    s += (char)(0xF0 | (cp >> 18));
    s += (char)(0x80 | ((cp >> 12) & 0x3F));
    s += (char)(0x80 | ((cp >> 6) & 0x3F));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last (up to 3) bytes can belong to an unfinished character.
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; back++) {
    uint8_t c = (uint8_t)s[n - back];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t need = utf8_len(c);
    return need > back ? n - back : n;
  }
  return n;  // four or more continuation bytes: invalid, nothing to wait for
}

// The length of the well-formed character at s[i] (Unicode's table 3-7: no
// overlong forms, surrogates or values past U+10FFFF), 0 if there is none.
static size_t well_formed_at(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return (uint8_t)s[i + k]; };
  const uint8_t b = at(0);
  if (b < 0x80) return 1;
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) n = 2;
  else if (b >= 0xE0 && b <= 0xEF) n = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
  else if (b >= 0xF0 && b <= 0xF4) n = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if (i + n > s.size() || at(1) < lo || at(1) > hi) return 0;
  for (size_t k = 2; k < n; k++)
    if ((at(k) & 0xC0) != 0x80) return 0;
  return n;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = well_formed_at(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i++;
    }
  }
  return out;
}

}  // namespace llm
