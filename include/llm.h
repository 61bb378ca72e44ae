/* llm.h: the engine's C API, for applications that embed it.
 *
 * Plain C types only. No function throws or aborts on bad input: each
 * returns a status (or a count) and llm_last_error() describes the last
 * failure of the calling thread in one line. Objects are freed by their
 * *_free function; freeing NULL is allowed. A model may be shared by several
 * contexts; a context and a sampler are for one thread at a time.
 */
#ifndef LLM_H
#define LLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shared library (libllm.so) exports these functions and nothing else:
 * the engine inside is built with hidden visibility. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef int32_t llm_token;
typedef struct llm_model llm_model;
typedef struct llm_context llm_context;
typedef struct llm_sampler llm_sampler;
typedef struct llm_lora llm_lora;

typedef enum {
  LLM_OK = 0,
  LLM_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, an id out of range, ... */
  LLM_ERR_FILE = 2,             /* missing, corrupt or unsupported model file */
  LLM_ERR_CONTEXT_FULL = 3,     /* the tokens do not fit the context */
  LLM_ERR_INTERNAL = 4,         /* anything else (out of memory, ...) */
} llm_status;

/* The last failure on this thread, "" if none. Valid until the next call. */
const char* llm_last_error(void);

/* Handles: every function checks that a handle is live (made by this library
 * and not yet freed) without reading it, and refuses one that is not
 * (INVALID_ARGUMENT, or 0 / -1 / NULL from the functions that return values);
 * freeing a handle twice or a NULL one does nothing. A model handle may be
 * freed while contexts and samplers made from it live: the model's memory is
 * released with the last of them. A sampler works only with contexts of the
 * model it was made for. One handle is used by one thread at a time. */

/* ---- models ---- */
llm_status llm_model_load(const char* path, llm_model** out);
void llm_model_free(llm_model* model);
int32_t llm_model_n_vocab(const llm_model* model);
int32_t llm_model_n_ctx_train(const llm_model* model);
int32_t llm_model_n_embd(const llm_model* model);
llm_token llm_token_bos(const llm_model* model); /* -1 if none */
llm_token llm_token_eos(const llm_model* model); /* -1 if none */
/* Writes up to `size` bytes of a description ("llama q4_1 134.5M") including the NUL. */
int32_t llm_model_desc(const llm_model* model, char* buf, int32_t size);

/* ---- tokens ---- */
/* Tokenizes text[0..len). add_special: BOS/EOS as the model asks; parse_special:
 * match control tokens written in the text. Returns the token count, or
 * -(needed) when capacity is too small, or INT32_MIN on error. */
int32_t llm_tokenize(const llm_model* model, const char* text, size_t len, int add_special, int parse_special,
                     llm_token* tokens, int32_t capacity);
/* A token's bytes (may end inside a UTF-8 character). Returns the length, or
 * -(needed) when size is too small, or INT32_MIN on error. No NUL is added. */
int32_t llm_token_to_piece(const llm_model* model, llm_token token, char* buf, int32_t size, int special);
/* A whole sequence as text (dummy prefix space removed). Same returns. */
int32_t llm_detokenize(const llm_model* model, const llm_token* tokens, int32_t n, char* buf, int32_t size,
                       int special);

/* ---- contexts: KV cache and evaluation ---- */
typedef struct {
  int32_t n_ctx;     /* 0: the model's trained length, at most 4096 */
  int32_t n_batch;   /* prompt tokens per graph (512) */
  int32_t n_threads; /* 0: all cores */
  int32_t kv_f32;    /* 1: F32 KV cache, 0: F16 (default) */
} llm_context_params;

llm_context_params llm_context_default_params(void);
llm_status llm_context_new(const llm_model* model, const llm_context_params* params, llm_context** out);
void llm_context_free(llm_context* ctx);
/* Evaluates tokens at the next positions. all_logits: keep every token's logits. */
llm_status llm_eval(llm_context* ctx, const llm_token* tokens, int32_t n, int all_logits);
/* Logits [n_vocab] of token i of the last llm_eval (i = -1: its last token);
 * NULL if unavailable. Valid until the next llm_eval. */
const float* llm_get_logits(llm_context* ctx, int32_t i);
int32_t llm_n_past(const llm_context* ctx);
int32_t llm_n_ctx(const llm_context* ctx);
/* Forgets positions >= n_past (0 clears the cache). */
llm_status llm_rewind(llm_context* ctx, int32_t n_past);

/* ---- LoRA adapters ---- */
/* Loads an adapter for model: llama.cpp's LoRA GGUF or a PEFT directory
 * (adapter_config.json + adapter_model.safetensors). An adapter for another
 * architecture or shape is refused (LLM_ERR_FILE, with the reason). */
llm_status llm_lora_load(const llm_model* model, const char* path, llm_lora** out);
/* Frees the handle; contexts it is applied to keep it until it is removed
 * from them or they are freed. */
void llm_lora_free(llm_lora* lora);
/* Applies an adapter to a context, unmerged, with a scale on its update (1:
 * as trained); called again, changes the scale. From the next llm_eval on:
 * the cache keeps what earlier tokens computed (llm_rewind(ctx, 0) to start
 * over). The adapter must be for the context's model. */
llm_status llm_context_set_lora(llm_context* ctx, llm_lora* lora, float scale);
/* Stops applying an adapter (LLM_ERR_INVALID_ARGUMENT if it was not applied). */
llm_status llm_context_remove_lora(llm_context* ctx, llm_lora* lora);

/* ---- sampling ---- */
typedef struct {
  float temp;               /* <= 0: greedy */
  int32_t top_k;            /* <= 0: off */
  float top_p;              /* 1: off */
  float min_p;              /* 0: off */
  float repeat_penalty;     /* 1: off */
  float frequency_penalty;
  float presence_penalty;
  int32_t penalty_last_n;
  uint64_t seed;
} llm_sampler_params;

llm_sampler_params llm_sampler_default_params(void);
llm_status llm_sampler_new(const llm_model* model, const llm_sampler_params* params, llm_sampler** out);
void llm_sampler_free(llm_sampler* s);
/* Samples from the context's last logits and records the token for the
 * penalties. Returns the token, or -1 on error. */
llm_token llm_sample(llm_sampler* s, llm_context* ctx);
/* Records a token the sampler did not choose (e.g. the prompt) for the penalties. */
void llm_sampler_accept(llm_sampler* s, llm_token token);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* LLM_H */
