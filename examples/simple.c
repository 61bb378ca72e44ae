/* simple: the C API end to end. Loads a model, tokenizes a prompt, evaluates
 * it, samples up to N tokens and prints the text as it streams.
 *   simple MODEL.gguf "PROMPT" [N] [TEMP]
 * Exit status 0 on success, 1 with a one-line message on any error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

static int fail(const char* what) {
  fprintf(stderr, "simple: %s: %s\n", what, llm_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: simple MODEL.gguf PROMPT [N_PREDICT] [TEMP]\n");
    return 1;
  }
  const int n_predict = argc > 3 ? atoi(argv[3]) : 32;
  const float temp = argc > 4 ? (float)atof(argv[4]) : 0.0f;

  llm_model* model = NULL;
  if (llm_model_load(argv[1], &model) != LLM_OK) return fail("load");
  char desc[128];
  llm_model_desc(model, desc, sizeof desc);
  fprintf(stderr, "simple: loaded %s\n", desc);

  llm_context_params cp = llm_context_default_params();
  cp.n_ctx = 256;
  llm_context* ctx = NULL;
  if (llm_context_new(model, &cp, &ctx) != LLM_OK) return fail("context");

  /* Ask for the token count first, then tokenize into a buffer of that size. */
  const size_t len = strlen(argv[2]);
  int32_t n = llm_tokenize(model, argv[2], len, 1, 0, NULL, 0);
  if (n == INT32_MIN) return fail("tokenize");
  if (n < 0) n = -n;
  llm_token* prompt = (llm_token*)malloc(sizeof(llm_token) * (size_t)(n > 0 ? n : 1));
  if (llm_tokenize(model, argv[2], len, 1, 0, prompt, n) != n) return fail("tokenize");
  if (n == 0 || llm_eval(ctx, prompt, n, 0) != LLM_OK) return fail("eval prompt");

  llm_sampler_params sp = llm_sampler_default_params();
  sp.temp = temp;
  sp.repeat_penalty = 1.0f;
  sp.seed = 42;
  llm_sampler* smp = NULL;
  if (llm_sampler_new(model, &sp, &smp) != LLM_OK) return fail("sampler");
  for (int32_t i = 0; i < n; i++) llm_sampler_accept(smp, prompt[i]);

  printf("%s", argv[2]);
  int generated = 0;
  for (; generated < n_predict; generated++) {
    llm_token t = llm_sample(smp, ctx);
    if (t < 0) return fail("sample");
    if (t == llm_token_eos(model)) break;
    char piece[256];
    int32_t k = llm_token_to_piece(model, t, piece, sizeof piece, 0);
    if (k < 0) return fail("piece");
    fwrite(piece, 1, (size_t)k, stdout);
    fflush(stdout);
    if (llm_n_past(ctx) >= llm_n_ctx(ctx)) break;
    if (llm_eval(ctx, &t, 1, 0) != LLM_OK) return fail("eval");
  }
  printf("\n");
  fprintf(stderr, "simple: %d tokens generated\n", generated);

  /* Errors come back as statuses, never as crashes. */
  llm_token bad = llm_model_n_vocab(model);
  if (llm_eval(ctx, &bad, 1, 0) != LLM_ERR_INVALID_ARGUMENT) {
    fprintf(stderr, "simple: an out-of-range token was accepted\n");
    return 1;
  }

  free(prompt);
  llm_sampler_free(smp);
  llm_context_free(ctx);
  llm_model_free(model);
  return 0;
}
