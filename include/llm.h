/* llm.h: the engine's C API, for applications that embed it.
 *
 * Version: LLM_VERSION_* below is the header's; llm_version() the library's.
 * Within one major version (the shared library's soname, libllm.so.0) later
 * minors only add functions: a program built against an older header runs
 * with a newer library.
 *
 * Errors: plain C types only. No function throws or aborts on bad input:
 * each returns a status (or a count) and llm_last_error() describes the last
 * failure of the calling thread in one line; every call that succeeds
 * clears it.
 *
 * Threads: any thread may call any function. A model (and an adapter loaded
 * for it) is read-only once loaded and may be used by several threads at
 * once, e.g. one context per thread. A context, a sampler and a stream are
 * used by one thread at a time; the one exception is llm_context_set_cancel,
 * which another thread may call while the context works. The engine runs its
 * own compute threads inside llm_eval and llm_embed; callbacks run on the
 * calling thread (load progress) or on one of those (abort checks).
 *
 * Objects are freed by their *_free function; freeing NULL is allowed.
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

#define LLM_VERSION_MAJOR 0
#define LLM_VERSION_MINOR 3
#define LLM_VERSION_PATCH 0

/* The library's version, "0.3.0" (0.3: llm_model_params.n_gpu_layers). */
const char* llm_version(void);

typedef int32_t llm_token;
typedef struct llm_model llm_model;
typedef struct llm_context llm_context;
typedef struct llm_sampler llm_sampler;
typedef struct llm_lora llm_lora;

typedef enum {
  LLM_OK = 0,
  LLM_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, an id or a parameter out of range, ... */
  LLM_ERR_FILE = 2,             /* missing, corrupt or unsupported model file */
  LLM_ERR_CONTEXT_FULL = 3,     /* the tokens do not fit the context */
  LLM_ERR_INTERNAL = 4,         /* anything else (out of memory, ...) */
  LLM_ERR_CANCELLED = 5,        /* stopped by a cancel request, an abort or a progress callback */
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
typedef struct {
  /* 0 (default): the weights are copied into memory (the fastest generation
   * here); 1: computed with straight from the file map (shared between
   * processes, quicker to load). */
  int32_t use_mmap;
  /* Threads that load the weights, and the default of this model's contexts
   * whose n_threads is 0 (0: one per physical core). */
  int32_t n_threads;
  /* Called during the load, on the loading thread, with the share of the
   * weights loaded (0..1, 1 last); a nonzero return stops the load
   * (LLM_ERR_CANCELLED). NULL: none. */
  int (*progress)(float fraction, void* user);
  void* progress_user;
  /* Layers offloaded to the GPU, the last ones (past the layer count: the
   * output matrix too, so a large value offloads everything); 0 (default):
   * none. Needs a library built with the CUDA backend, else
   * LLM_ERR_INVALID_ARGUMENT says so. */
  int32_t n_gpu_layers;
} llm_model_params;

llm_model_params llm_model_default_params(void);
/* Loads a GGUF model file (LLaMA, GPT-NeoX, GPT-J; F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, K-quants). params NULL: the defaults. */
llm_status llm_model_load_ex(const char* path, const llm_model_params* params, llm_model** out);
/* llm_model_load_ex with the default parameters. */
llm_status llm_model_load(const char* path, llm_model** out);
void llm_model_free(llm_model* model);
int32_t llm_model_n_vocab(const llm_model* model);
int32_t llm_model_n_ctx_train(const llm_model* model);
int32_t llm_model_n_embd(const llm_model* model);
llm_token llm_token_bos(const llm_model* model); /* -1 if none */
llm_token llm_token_eos(const llm_model* model); /* -1 if none */
/* The token that ends an assistant's turn: the chat template's (ChatML's
 * <|im_end|>), else EOS; -1 if none. */
llm_token llm_token_eot(const llm_model* model);
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

/* ---- chat templates ---- */
typedef struct {
  const char* role;    /* "system", "user" or "assistant" */
  const char* content; /* UTF-8 text */
} llm_chat_message;

/* The model's chat template (ChatML when its template uses it, else a plain
 * "User:/Assistant:" format) applied to n messages, then the assistant's
 * turn opener when add_assistant. add_default_system: begin with the
 * template's default system turn (SmolLM2's names the assistant) when the
 * first message is not a system turn. Writes the text to buf (no NUL);
 * returns its length, or -(needed) when size is too small, or INT32_MIN on
 * error. */
int32_t llm_chat_apply(const llm_model* model, const llm_chat_message* msgs, int32_t n, int add_assistant,
                       int add_default_system, char* buf, int32_t size);
/* The same as tokens, ready for llm_eval (BOS first when the model asks for
 * it and add_bos): the template's markup is tokenized with its control
 * tokens, the messages' text without, so a user's text cannot inject control
 * tokens. Returns the count, or -(needed) when capacity is too small, or
 * INT32_MIN on error. */
int32_t llm_chat_tokenize(const llm_model* model, const llm_chat_message* msgs, int32_t n, int add_assistant,
                          int add_default_system, int add_bos, llm_token* tokens, int32_t capacity);
/* Text that ends an assistant's turn besides llm_token_eot (the plain
 * format's "\nUser:"), i from 0; NULL past the last. Valid while the model
 * handle lives. */
const char* llm_chat_stop_string(const llm_model* model, int32_t i);

/* ---- streaming text out of generated tokens ---- */
typedef struct llm_stream llm_stream;
/* Turns generated tokens into text to show as they come: whole UTF-8
 * characters only (a token may end inside one; bytes that form no character
 * become U+FFFD, so the text is always valid UTF-8), the leading space the
 * tokenizer adds dropped as llm_detokenize does, and text that could still
 * become one of the n stop strings held back until it is decided (stops may
 * be NULL when n is 0). Control tokens give no text. */
llm_status llm_stream_new(const llm_model* model, const char* const* stops, int32_t n, llm_stream** out);
void llm_stream_free(llm_stream* s);
/* Adds a token; returns the text now ready ("" if none; NUL-terminated,
 * valid until the next call on the stream) and sets *stopped (if not NULL)
 * to 1 when a stop string is complete: the text before it is returned, the
 * stop string and what follows are not, and the stream starts over. NULL on
 * error. */
const char* llm_stream_push(llm_stream* s, llm_token token, int* stopped);
/* The end of a generation: whatever is held back (an incomplete character
 * too); the stream starts over. */
const char* llm_stream_flush(llm_stream* s);

/* ---- contexts: KV cache and evaluation ---- */
typedef struct {
  int32_t n_ctx;     /* 0: the model's trained length, at most 4096; at most the trained length */
  int32_t n_batch;   /* prompt tokens per graph (512) */
  int32_t n_threads; /* 0: the model's n_threads (one per physical core) */
  int32_t kv_f32;    /* 1: F32 KV cache, 0: F16 (default) */
} llm_context_params;

llm_context_params llm_context_default_params(void);
llm_status llm_context_new(const llm_model* model, const llm_context_params* params, llm_context** out);
void llm_context_free(llm_context* ctx);
/* Evaluates tokens at the next positions. all_logits: keep every token's
 * logits. Cancelled (LLM_ERR_CANCELLED), the prompt batches done before the
 * stop stay in the cache (llm_n_past counts them) and no logits are left. */
llm_status llm_eval(llm_context* ctx, const llm_token* tokens, int32_t n, int all_logits);
/* Logits [n_vocab] of token i of the last llm_eval (i = -1: its last token);
 * NULL if unavailable. Valid until the next llm_eval. */
const float* llm_get_logits(llm_context* ctx, int32_t i);
int32_t llm_n_past(const llm_context* ctx);
int32_t llm_n_ctx(const llm_context* ctx);
/* Forgets positions >= n_past (0 clears the cache). Rewinding before the
 * last evaluated token drops its logits: sampling fails until the next
 * llm_eval. */
llm_status llm_rewind(llm_context* ctx, int32_t n_past);

/* Cancelling from another thread: nonzero makes the running llm_eval or
 * llm_embed stop at its next graph node (one operation) and
 * every later one fail at once, all with LLM_ERR_CANCELLED, until it is set
 * back to 0 (do that before starting new work). Safe to call from any thread
 * while the context lives; not from a signal handler (use the abort
 * callback there). */
llm_status llm_context_set_cancel(llm_context* ctx, int cancel);
/* Asked between graph nodes and prompt batches of llm_eval and llm_embed, on
 * one of the context's compute threads: nonzero stops the call with
 * LLM_ERR_CANCELLED. It must be quick and must not call this API. NULL
 * removes it. */
llm_status llm_context_set_abort(llm_context* ctx, int (*abort)(void* user), void* user);

/* ---- embeddings ---- */
typedef enum {
  LLM_POOL_MEAN = 0, /* the average over the tokens */
  LLM_POOL_LAST = 1, /* the last token's (it has seen all of them) */
  LLM_POOL_NONE = 2, /* every token's, n rows of n_embd */
} llm_pooling;
/* The final hidden state (after the output norm: what the output matrix
 * turns into logits) of n tokens evaluated as a text of their own, pooled
 * as pooling (an llm_pooling value) says: the context's cache is cleared
 * first and holds them afterwards. normalize:
 * each vector scaled to unit length (dot products are then cosine
 * similarities). Writes to out (capacity floats) and returns the count
 * (llm_model_n_embd, or n times that for LLM_POOL_NONE), or -(needed) when
 * capacity is too small (nothing is evaluated then), or INT32_MIN on error
 * (llm_last_error; a cancel leaves the cache empty). */
int32_t llm_embed(llm_context* ctx, const llm_token* tokens, int32_t n, int32_t pooling, int normalize,
                  float* out, int32_t capacity);

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
  float top_p;              /* in (0, 1]; 1: off */
  float min_p;              /* in [0, 1]; 0: off */
  float repeat_penalty;     /* > 0; 1: off */
  float frequency_penalty;
  float presence_penalty;
  int32_t penalty_last_n;
  uint64_t seed;
} llm_sampler_params;

llm_sampler_params llm_sampler_default_params(void);
llm_status llm_sampler_new(const llm_model* model, const llm_sampler_params* params, llm_sampler** out);
void llm_sampler_free(llm_sampler* s);
/* Samples from the context's last logits and records the token for the
 * penalties. Returns the token, or -1 on error (no logits: nothing
 * evaluated since the context was made or rewound before its last token). */
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
