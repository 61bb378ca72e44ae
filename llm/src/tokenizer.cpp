#include "llm/tokenizer.h"

#include <algorithm>
#include <queue>
#include <unordered_map>

#include "llm/error.h"
#include "pretokenize.h"

namespace llm {

namespace {
const std::string SPACE_MARK = "\xE2\x96\x81";  // U+2581, SentencePiece's space

struct Symbol {
  size_t start, len;
  int prev, next;
};

// Candidate merge of symbols[left] and its right neighbour. Better candidates
// pop first: lower BPE rank / higher SPM score, then the leftmost.
struct Candidate {
  double priority;  // larger is better
  size_t pos;
  int left;
  size_t left_len, right_len;
  bool operator<(const Candidate& o) const {
    if (priority != o.priority) return priority < o.priority;
    return pos > o.pos;
  }
};
}  // namespace

// Whole tokens found in text by longest match, in time proportional to the
// match rather than to the number of tokens (200k user-defined tokens made
// a linear scan per position cost 44 s for 100 KB of text). Memory: a node
// per distinct prefix byte, bounded by the tokens' total length.
class TokenTrie {
 public:
  void insert(const std::string& s, int32_t id) {
    uint32_t node = 0;
    for (unsigned char c : s) {
      auto [it, added] = edges_.try_emplace(key(node, c), (uint32_t)ids_.size());
      if (added) ids_.push_back(-1);
      node = it->second;
    }
    if (node != 0 && ids_[node] < 0) ids_[node] = id;  // the first (lowest) id of a text wins
    empty_ = empty_ && node == 0;
  }
  bool empty() const { return empty_; }
  // The token of the longest match starting at text[pos], or -1.
  int32_t longest(std::string_view text, size_t pos, size_t* len = nullptr) const {
    int32_t best = -1;
    uint32_t node = 0;
    for (size_t i = pos; i < text.size(); i++) {
      auto it = edges_.find(key(node, (unsigned char)text[i]));
      if (it == edges_.end()) break;
      node = it->second;
      if (ids_[node] >= 0) {
        best = ids_[node];
        if (len) *len = i + 1 - pos;
      }
    }
    return best;
  }

 private:
  static uint64_t key(uint32_t node, unsigned char c) { return uint64_t(node) << 8 | c; }
  std::vector<int32_t> ids_{-1};  // node 0 is the root
  std::unordered_map<uint64_t, uint32_t> edges_;
  bool empty_ = true;
};

struct Tokenizer::Impl {
  Vocab v;
  std::unordered_map<std::string, int32_t> ids;         // text -> id (first wins)
  std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank
  std::unique_ptr<PreTokenizer> pre;
  int32_t byte_ids[256];
  bool has_byte_tokens = false;
  // Byte-level BPE: the tokens of U+FFFD, for a byte whose character the
  // vocabulary lacks (0xF5-0xFF never occur in UTF-8, and trained vocabularies
  // often leave them out). The unknown token would be wrong there: in these
  // vocabularies it is usually <|endoftext|>, which ends the text for the model.
  std::vector<int32_t> replacement;
  // Tokens matched as a whole in the text: user-defined always, control on request.
  TokenTrie user_defined, control;

  // Returns the id of a mergeable piece, -1 if the text is not one.
  int32_t mergeable(const std::string& s) const {
    auto it = ids.find(s);
    if (it == ids.end()) return -1;
    TokenType t = v.types[it->second];
    if (t == TokenType::Control || t == TokenType::Unused || t == TokenType::Unknown || t == TokenType::Byte)
      return -1;
    return it->second;
  }

  // Merges symbols of `word` greedily by `priority_of` (nullopt when the pair
  // does not merge), then emits each final symbol through `emit`.
  // `atomic` (SPM) lists tokens that stay whole symbols and never merge.
  template <class Prio, class Emit>
  void merge_word(const std::string& word, Prio priority_of, Emit emit,
                  const TokenTrie* atomic = nullptr) const {
    std::vector<Symbol> sym;
    std::vector<bool> fixed;
    for (size_t i = 0; i < word.size();) {
      size_t n = std::min(utf8_len((uint8_t)word[i]), word.size() - i);
      bool whole = false;
      size_t len = 0;
      if (atomic && atomic->longest(word, i, &len) >= 0) {
        n = len;
        whole = true;
      }
      sym.push_back({i, n, (int)sym.size() - 1, (int)sym.size() + 1});
      fixed.push_back(whole);
      i += n;
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    std::priority_queue<Candidate> q;
    auto consider = [&](int l) {
      if (l < 0 || sym[l].next < 0) return;
      const Symbol& a = sym[l];
      const Symbol& b = sym[a.next];
      if (fixed[l] || fixed[a.next]) return;
      double p;
      if (priority_of(word, a, b, p)) q.push({p, a.start, l, a.len, b.len});
    };
    for (int i = 0; i + 1 < (int)sym.size(); i++) consider(i);
    while (!q.empty()) {
      Candidate c = q.top();
      q.pop();
      Symbol& a = sym[c.left];
      if (a.len != c.left_len || a.next < 0) continue;  // stale
      Symbol& b = sym[a.next];
      if (b.len != c.right_len || b.len == 0) continue;
      a.len += b.len;
      a.next = b.next;
      if (b.next >= 0) sym[b.next].prev = c.left;
      b.len = 0;
      consider(a.prev);
      consider(c.left);
    }
    for (int i = 0; i >= 0; i = sym[i].next) emit(word.substr(sym[i].start, sym[i].len));
  }

  void emit_bytes(const std::string& s, std::vector<int32_t>& out) const {
    for (unsigned char c : s) {
      if (has_byte_tokens && byte_ids[c] >= 0) out.push_back(byte_ids[c]);
      else if (v.unk >= 0) out.push_back(v.unk);
    }
  }

  void encode_spm(std::string_view text, bool dummy_prefix, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::string s;
    if (dummy_prefix) s = SPACE_MARK;
    for (char c : text) {
      if (c == ' ') s += SPACE_MARK;
      else s += c;
    }
    auto prio = [&](const std::string& w, const Symbol& a, const Symbol& b, double& p) {
      int32_t id = mergeable(w.substr(a.start, a.len + b.len));
      if (id < 0) return false;
      p = v.scores[id];
      return true;
    };
    bool last_unk = false;
    merge_word(s, prio, [&](const std::string& piece) {
      auto it = ids.find(piece);
      if (it != ids.end() && (mergeable(piece) >= 0 || v.types[it->second] == TokenType::UserDefined)) {
        out.push_back(it->second);
        last_unk = false;
      } else if (has_byte_tokens) {
        emit_bytes(piece, out);
        last_unk = false;
      } else if (v.unk >= 0) {
        // sentencepiece folds a run of unknown characters into one <unk>.
        if (!last_unk) out.push_back(v.unk);
        last_unk = true;
      }
    }, &user_defined);
  }

  // Byte-level BPE of one pre-tokenized word (each character stands for a byte).
  std::vector<int32_t> bpe_word(const std::string& word) const {
    std::vector<int32_t> ids_out;
    auto prio = [&](const std::string& w, const Symbol& a, const Symbol& b, double& p) {
      std::string key;
      key.reserve(a.len + b.len + 1);
      key.append(w, a.start, a.len).append(1, ' ').append(w, b.start, b.len);
      auto it = merge_rank.find(key);
      if (it == merge_rank.end()) return false;
      p = -(double)it->second;
      return true;
    };
    merge_word(word, prio, [&](const std::string& sym) {
      auto it = ids.find(sym);
      if (it != ids.end()) {
        ids_out.push_back(it->second);
        return;
      }
      // A merge whose result is not a token: fall back to the characters.
      for (size_t i = 0; i < sym.size();) {
        size_t n = std::min(utf8_len((uint8_t)sym[i]), sym.size() - i);
        auto c = ids.find(sym.substr(i, n));
        if (c != ids.end()) ids_out.push_back(c->second);
        else if (!replacement.empty()) ids_out.insert(ids_out.end(), replacement.begin(), replacement.end());
        else if (v.unk >= 0) ids_out.push_back(v.unk);
        i += n;
      }
    });
    return ids_out;
  }

  void encode_bpe(std::string_view text, std::vector<int32_t>& out,
                  std::unordered_map<std::string, std::vector<int32_t>>& cache) const {
    for (std::string_view piece : pre->split(text)) {
      std::string word;
      for (unsigned char c : piece) word += utf8_encode(byte_to_codepoint(c));
      auto hit = cache.find(word);
      if (hit != cache.end()) {
        out.insert(out.end(), hit->second.begin(), hit->second.end());
        continue;
      }
      std::vector<int32_t> ids_out = bpe_word(word);
      out.insert(out.end(), ids_out.begin(), ids_out.end());
      cache.emplace(std::move(word), std::move(ids_out));
    }
  }
};

Tokenizer::Tokenizer(Vocab vocab) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.v = std::move(vocab);
  m.v.validate("tokenizer");
  m.ids.reserve(m.v.tokens.size());
  std::fill(std::begin(m.byte_ids), std::end(m.byte_ids), -1);
  for (int32_t i = 0; i < m.v.size(); i++) {
    const std::string& t = m.v.tokens[i];
    m.ids.emplace(t, i);
    TokenType ty = m.v.types[i];
    if (ty == TokenType::Byte && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
      int b = (int)std::strtol(t.substr(3, 2).c_str(), nullptr, 16);
      m.byte_ids[b & 255] = i;
      m.has_byte_tokens = true;
    }
    if (t.empty()) continue;
    if (ty == TokenType::UserDefined) m.user_defined.insert(t, i);
    if (ty == TokenType::Control) m.control.insert(t, i);
  }
  if (m.v.model == Vocab::Model::BPE) {
    m.pre = std::make_unique<PreTokenizer>(m.v.pre);
    m.merge_rank.reserve(m.v.merges.size());
    for (size_t r = 0; r < m.v.merges.size(); r++) m.merge_rank.emplace(m.v.merges[r], (int32_t)r);
    std::string fffd;
    for (unsigned char c : std::string("\xEF\xBF\xBD")) fffd += utf8_encode(byte_to_codepoint(c));
    std::vector<int32_t> r = m.bpe_word(fffd);
    if (std::find(r.begin(), r.end(), m.v.unk) == r.end()) m.replacement = std::move(r);
  }
}

Tokenizer::~Tokenizer() = default;

const Vocab& Tokenizer::vocab() const { return impl_->v; }

int32_t Tokenizer::find(std::string_view text) const {
  auto it = impl_->ids.find(std::string(text));
  return it == impl_->ids.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  if (add_special && m.v.add_bos && m.v.bos >= 0) out.push_back(m.v.bos);

  // Split off whole special tokens (longest match at the leftmost position).
  auto match_at = [&](size_t pos) -> int32_t {
    if (parse_special)
      if (int32_t id = m.control.longest(text, pos); id >= 0) return id;
    // sentencepiece finds user-defined pieces inside its own merge pass.
    if (m.v.model == Vocab::Model::SPM) return -1;
    return m.user_defined.longest(text, pos);
  };
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  bool after_special = true;  // SPM adds the dummy prefix at the start and after each special token
  size_t frag = 0;
  auto flush = [&](size_t end) {
    std::string_view piece = text.substr(frag, end - frag);
    if (m.v.model == Vocab::Model::SPM) m.encode_spm(piece, m.v.add_space_prefix && after_special, out);
    else m.encode_bpe(piece, out, cache);
  };
  const bool any_special = (!m.user_defined.empty() && m.v.model == Vocab::Model::BPE) || (parse_special && !m.control.empty());
  for (size_t pos = 0; any_special && pos < text.size();) {
    int32_t id = match_at(pos);
    if (id < 0) {
      pos++;
      continue;
    }
    if (pos > frag) {
      flush(pos);
      after_special = false;
    }
    out.push_back(id);
    after_special = true;
    pos += m.v.tokens[id].size();
    frag = pos;
  }
  if (frag < text.size()) flush(text.size());
  if (add_special && m.v.add_eos && m.v.eos >= 0) out.push_back(m.v.eos);
  return out;
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= m.v.size()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  const std::string& t = m.v.tokens[id];
  switch (m.v.types[id]) {
    case TokenType::Control:
      return special ? t : std::string();
    case TokenType::Byte:
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0)
        return std::string(1, (char)std::strtol(t.substr(3, 2).c_str(), nullptr, 16));
      return t;
    case TokenType::UserDefined:
      return t;
    default:
      break;
  }
  std::string s;
  if (m.v.model == Vocab::Model::SPM) {
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, SPACE_MARK) == 0) {
        s += ' ';
        i += 3;
      } else {
        s += t[i++];
      }
    }
    return s;
  }
  // Byte-level: each character stands for one byte.
  for (size_t i = 0; i < t.size();) {
    size_t n = std::min(utf8_len((uint8_t)t[i]), t.size() - i);
    uint32_t cp = (uint8_t)t[i];
    if (n == 2) cp = ((cp & 0x1F) << 6) | ((uint8_t)t[i + 1] & 0x3F);
    int b = n <= 2 ? codepoint_to_byte(cp) : -1;
    if (b >= 0) s += (char)b;
    else s.append(t, i, n);
    i += n;
  }
  return s;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  StreamDecoder d(*this, special);
  std::string s;
  for (int32_t id : ids) s += d.push(id);
  return s + d.flush();
}

std::string StreamDecoder::push(int32_t id) {
  std::string p = tok_.piece(id, special_);
  const Vocab& v = tok_.vocab();
  if (first_ && v.types[id] != TokenType::Control) {
    // The dummy prefix encode added is not part of the text.
    if (v.model == Vocab::Model::SPM && v.add_space_prefix && !p.empty() && p[0] == ' ') p.erase(0, 1);
    first_ = false;
  }
  pending_ += p;
  size_t n = utf8_complete_prefix(pending_);
  std::string out = pending_.substr(0, n);
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace llm
