#pragma once
// What every command-line tool does the same way: --help and --version,
// reading a text file or standard input ("-"), and options checked before
// any work starts (one clear line, exit status 1, never a silent default).
#include <cxxopts.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "llm/lora.h"
#include "llm/model.h"

namespace tool {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "NAME (llmengine) 0.1.0, commit abc1234"
std::string version_line(const std::string& name);

// Adds -h/--help and --version to a tool's options.
void add_standard_options(cxxopts::Options& opts);

// Prints the help (with the extra text after it) or the version when asked;
// true means the tool has answered and should exit 0. Also refuses stray
// positional arguments.
bool answer_standard_options(const cxxopts::ParseResult& r, const cxxopts::Options& opts,
                             const std::string& name, const std::string& help_extra = "");

// A file's whole content, or standard input's for "-". Says why it cannot
// (a directory, a missing file, a read error, more than kMaxText bytes) in
// one line naming the path.
constexpr size_t kMaxText = size_t(256) << 20;
std::string read_text(const std::string& path);

// Every value given for a repeatable option, each whole (cxxopts' vector
// values split on commas, so "--stop ," could not be given).
std::vector<std::string> all_values(const cxxopts::ParseResult& r, const std::string& long_name);

// An option's value, refused with "--NAME must be ..." unless lo <= v <= hi.
// (Instantiated in common.cpp for int, int64_t and float.)
template <class T>
T in_range(const cxxopts::ParseResult& r, const std::string& name, T lo, T hi, const std::string& must);

// The options of the tools that load a model to run it (main, perplexity,
// bench): -t/--threads, --mmap, --no-repack, with one help text.
void add_model_options(cxxopts::Options& opts);
// Their values: how to load the model, and the thread count (0: every core).
llm::LoadOptions load_options(const cxxopts::ParseResult& r);
int threads(const cxxopts::ParseResult& r);

// --lora FILE (repeatable: a GGUF adapter or a PEFT directory) and
// --lora-scale S (repeatable, the n-th for the n-th --lora; 1 by default).
void add_lora_options(cxxopts::Options& opts);
struct Loras {
  std::vector<std::unique_ptr<llm::Lora>> held;
  std::vector<std::pair<const llm::Lora*, float>> applied;  // what SessionParams::loras takes
};
Loras load_loras(const cxxopts::ParseResult& r, const llm::Model& model);

// Runs a tool's body, turning every exception into "NAME: message" on stderr
// and exit status 1.
int guarded_main(const std::string& name, int (*body)(int, char**), int argc, char** argv);

}  // namespace tool
