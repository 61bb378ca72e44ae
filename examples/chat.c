/* chat: a terminal chat on the C API alone (include/llm.h).
 *   chat MODEL.gguf [-s SYSTEM] [-c N_CTX] [-n MAX_TOKENS] [--temp T] [--seed S]
 * One line a turn; an empty line or end of input ends the chat. Ctrl-C stops
 * the answer being written (a second one at the prompt ends the chat).
 *
 * The conversation is kept as messages; each turn the whole conversation is
 * tokenized with the model's template and only what the cache lacks is
 * evaluated (the longest common prefix stays), so any template works and a
 * full context drops the oldest exchanges. Exit status 0, or 1 with a
 * one-line message. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"

static volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig) {
  (void)sig;
  g_interrupted = 1;
}
/* The abort check: read on a compute thread, set by the signal handler. */
static int interrupted(void* user) {
  (void)user;
  return g_interrupted != 0;
}

static int progress(float f, void* user) {
  int* shown = (int*)user; /* the last percentage printed */
  const int pct = (int)(f * 100.0f);
  if (pct == *shown) return 0;
  *shown = pct;
  fprintf(stderr, "\rchat: loading %3d%%%s", pct, pct == 100 ? "\n" : "");
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void* xrealloc(void* p, size_t n) {
  void* q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "chat: out of memory\n");
    exit(1);
  }
  return q;
}

static char* xstrdup(const char* s) {
  char* d = (char*)xrealloc(NULL, strlen(s) + 1);
  strcpy(d, s);
  return d;
}

static int fail(const char* what) {
  fprintf(stderr, "chat: %s: %s\n", what, llm_last_error());
  return 1;
}

/* The conversation: messages with their own copies of the text. */
typedef struct {
  llm_chat_message* m;
  int32_t n, cap;
} conversation;

static void add_message(conversation* c, const char* role, const char* text) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 8;
    c->m = (llm_chat_message*)xrealloc(c->m, sizeof(llm_chat_message) * (size_t)c->cap);
  }
  c->m[c->n].role = role;
  c->m[c->n].content = xstrdup(text);
  c->n++;
}

/* Drops the oldest exchange after the system turn (if there is one). */
static int drop_oldest(conversation* c, int first) {
  if (c->n - first < 3) return 0; /* the current question must stay */
  free((void*)c->m[first].content);
  free((void*)c->m[first + 1].content);
  memmove(c->m + first, c->m + first + 2, sizeof(llm_chat_message) * (size_t)(c->n - first - 2));
  c->n -= 2;
  return 1;
}

int main(int argc, char** argv) {
  const char* path = NULL;
  const char* system = NULL;
  int32_t n_ctx = 2048, max_tokens = 512;
  llm_sampler_params sp = llm_sampler_default_params();
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const int more = i + 1 < argc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: chat MODEL.gguf [-s SYSTEM] [-c N_CTX] [-n MAX_TOKENS] [--temp T] [--seed S]\n"
             "  -s SYSTEM    the system prompt (default: the template's own, if it has one)\n"
             "  -c N_CTX     context length in tokens (2048; at most the model's)\n"
             "  -n MAX       at most this many tokens an answer (512)\n"
             "  --temp T     sampling temperature (0: greedy; default %.2f)\n"
             "  --seed S     sampling seed\n",
             (double)sp.temp);
      return 0;
    } else if (!strcmp(a, "-s") && more) {
      system = argv[++i];
    } else if (!strcmp(a, "-c") && more) {
      n_ctx = atoi(argv[++i]);
    } else if (!strcmp(a, "-n") && more) {
      max_tokens = atoi(argv[++i]);
    } else if (!strcmp(a, "--temp") && more) {
      sp.temp = (float)atof(argv[++i]);
    } else if (!strcmp(a, "--seed") && more) {
      sp.seed = (uint64_t)strtoull(argv[++i], NULL, 10);
    } else if (a[0] == '-' || path) {
      fprintf(stderr, "chat: unknown or incomplete option '%s' (--help)\n", a);
      return 1;
    } else {
      path = a;
    }
  }
  if (!path) {
    fprintf(stderr, "chat: no model (usage: chat MODEL.gguf; --help)\n");
    return 1;
  }
  if (n_ctx <= 0 || max_tokens <= 0) {
    fprintf(stderr, "chat: -c and -n must be positive\n");
    return 1;
  }

  llm_model_params mp = llm_model_default_params();
  int shown = -1;
  mp.progress = progress;
  mp.progress_user = &shown;
  llm_model* model = NULL;
  if (llm_model_load_ex(path, &mp, &model) != LLM_OK) return fail("load");
  if (n_ctx > llm_model_n_ctx_train(model)) n_ctx = llm_model_n_ctx_train(model);
  llm_context_params cp = llm_context_default_params();
  cp.n_ctx = n_ctx;
  llm_context* ctx = NULL;
  if (llm_context_new(model, &cp, &ctx) != LLM_OK) return fail("context");
  llm_context_set_abort(ctx, interrupted, NULL);
  llm_sampler* smp = NULL;
  if (llm_sampler_new(model, &sp, &smp) != LLM_OK) return fail("sampler");
  const char* stops[8];
  int32_t n_stops = 0;
  while (n_stops < 8 && llm_chat_stop_string(model, n_stops)) stops[n_stops] = llm_chat_stop_string(model, n_stops), n_stops++;
  llm_stream* stream = NULL;
  if (llm_stream_new(model, stops, n_stops, &stream) != LLM_OK) return fail("stream");
  const llm_token eos = llm_token_eos(model), eot = llm_token_eot(model);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);

  conversation conv = {NULL, 0, 0};
  if (system) add_message(&conv, "system", system);
  const int first = system ? 1 : 0;        /* the first message that may be dropped */
  llm_token* cache = (llm_token*)xrealloc(NULL, sizeof(llm_token) * (size_t)n_ctx); /* what the context holds */
  int32_t n_cache = 0;
  llm_token* want = NULL;
  int32_t want_cap = 0;
  char* answer = NULL;
  size_t answer_len = 0;
  char line[8192];

  fprintf(stderr, "chat: %d tokens of context; an empty line ends, Ctrl-C stops an answer\n", n_ctx);
  for (;;) {
    fprintf(stderr, "> ");
    fflush(stderr);
    g_interrupted = 0;
    if (!fgets(line, sizeof line, stdin)) break;
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) break;
    add_message(&conv, "user", line);

    /* The whole conversation's tokens; drop old exchanges until it leaves
     * room for an answer. */
    int32_t n_want;
    for (;;) {
      n_want = llm_chat_tokenize(model, conv.m, conv.n, 1, system == NULL, 1, want, want_cap);
      if (n_want == INT32_MIN) return fail("chat template");
      if (n_want < 0) {
        want_cap = -n_want;
        want = (llm_token*)xrealloc(want, sizeof(llm_token) * (size_t)want_cap);
        continue;
      }
      if (n_want + max_tokens <= n_ctx || !drop_oldest(&conv, first)) break;
    }
    if (n_want + 1 > n_ctx) {
      fprintf(stderr, "chat: the question does not fit the context (%d tokens of %d)\n", n_want, n_ctx);
      conv.n--;
      free((void*)conv.m[conv.n].content);
      continue;
    }
    /* Keep the cache's longest common prefix with it (one token at least is
     * evaluated, for fresh logits). */
    int32_t keep = 0;
    while (keep < n_cache && keep < n_want - 1 && cache[keep] == want[keep]) keep++;
    llm_rewind(ctx, keep);
    n_cache = keep;
    double t0 = now();
    llm_status st = llm_eval(ctx, want + keep, n_want - keep, 0);
    if (st == LLM_ERR_CANCELLED) {
      fprintf(stderr, "\n[stopped]\n");
      n_cache = llm_n_past(ctx); /* the batches done stay */
      memcpy(cache + keep, want + keep, sizeof(llm_token) * (size_t)(n_cache - keep));
      conv.n--;
      free((void*)conv.m[conv.n].content);
      continue;
    }
    if (st != LLM_OK) return fail("eval");
    memcpy(cache + keep, want + keep, sizeof(llm_token) * (size_t)(n_want - keep));
    n_cache = n_want;
    for (int32_t i = 0; i < n_want; i++) llm_sampler_accept(smp, want[i]);
    const double t_prompt = now() - t0;

    t0 = now();
    answer_len = 0;
    int32_t n_gen = 0;
    int stopped = 0;
    while (n_gen < max_tokens && !g_interrupted && n_cache < n_ctx) {
      const llm_token t = llm_sample(smp, ctx);
      if (t < 0) return fail("sample");
      if (t == eos || t == eot) break;
      const char* text = llm_stream_push(stream, t, &stopped);
      if (!text) return fail("stream");
      const size_t tl = strlen(text);
      answer = (char*)xrealloc(answer, answer_len + tl + 1);
      memcpy(answer + answer_len, text, tl + 1);
      answer_len += tl;
      fputs(text, stdout);
      fflush(stdout);
      n_gen++;
      if (stopped) break;
      st = llm_eval(ctx, &t, 1, 0);
      if (st == LLM_ERR_CANCELLED) break;
      if (st != LLM_OK) return fail("eval");
      cache[n_cache++] = t;
    }
    if (!stopped) {
      const char* rest = llm_stream_flush(stream);
      const size_t tl = strlen(rest);
      answer = (char*)xrealloc(answer, answer_len + tl + 1);
      memcpy(answer + answer_len, rest, tl + 1);
      answer_len += tl;
      fputs(rest, stdout);
    }
    const double t_gen = now() - t0;
    fputs("\n", stdout);
    fflush(stdout);
    if (g_interrupted) fprintf(stderr, "[stopped]\n");
    fprintf(stderr, "[%d prompt tokens at %.1f t/s, %d answer tokens at %.1f t/s]\n", n_want - keep,
            (n_want - keep) / (t_prompt > 0 ? t_prompt : 1e-9), n_gen, n_gen / (t_gen > 0 ? t_gen : 1e-9));
    add_message(&conv, "assistant", answer ? answer : "");
  }

  for (int32_t i = 0; i < conv.n; i++) free((void*)conv.m[i].content);
  free(conv.m);
  free(cache);
  free(want);
  free(answer);
  llm_stream_free(stream);
  llm_sampler_free(smp);
  llm_context_free(ctx);
  llm_model_free(model);
  return 0;
}
