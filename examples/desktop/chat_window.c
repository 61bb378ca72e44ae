/* llm-chat: a desktop chat window (GTK 4) on the C API (include/llm.h).
 *   llm-chat [--model FILE.gguf] [--temp T] [-n MAX_TOKENS] [--transcript FILE]
 * Open a model with the button in the header bar (or --model), type a
 * question, press Enter: the answer streams in; Stop (Alt+T, or Escape)
 * cancels it.
 * A spinner turns while a model loads or an answer is written, and the status
 * bar shows the load's progress and each answer's tokens/s.
 *
 * Threads: the engine works on one worker thread at a time (a load or an
 * answer), which hands text to the window through g_idle_add; the window's
 * thread only starts work, and cancels it with llm_context_set_cancel.
 * --transcript appends every finished answer (and "[stopped]") to a file,
 * and "ready", "answering" and each answer's status line go to stdout: what
 * the test under Xvfb watches. */
#include <gtk/gtk.h>
#include <string.h>

#include "llm.h"

typedef struct {
  GtkWidget *window, *view, *entry, *send, *stop, *open, *spinner, *status;
  GtkTextBuffer* buffer;
  /* The engine: touched by the worker while busy, by the window otherwise. */
  llm_model* model;
  llm_context* ctx;
  llm_sampler* sampler;
  llm_stream* stream;
  llm_token eos, eot;
  GArray* cache;     /* the tokens the context holds */
  GPtrArray* roles;  /* the conversation (const char*) */
  GPtrArray* texts;  /* and its texts (owned) */
  gboolean busy;
  /* Settings. */
  float temp;
  int max_tokens;
  char* transcript;
} App;

static App app;

/* ---- small messages from the worker to the window ---- */
typedef struct {
  char* text;
  double fraction; /* load progress; < 0: none */
} Update;

static gboolean on_text(gpointer p) {
  Update* u = (Update*)p;
  GtkTextIter end;
  gtk_text_buffer_get_end_iter(app.buffer, &end);
  gtk_text_buffer_insert(app.buffer, &end, u->text, -1);
  GtkTextMark* mark = gtk_text_buffer_get_insert(app.buffer);
  gtk_text_buffer_get_end_iter(app.buffer, &end);
  gtk_text_buffer_place_cursor(app.buffer, &end);
  gtk_text_view_scroll_mark_onscreen(GTK_TEXT_VIEW(app.view), mark);
  g_free(u->text);
  g_free(u);
  return G_SOURCE_REMOVE;
}

static void post_text(const char* s) {
  if (!s || !*s) return;
  Update* u = g_new0(Update, 1);
  u->text = g_strdup(s);
  g_idle_add(on_text, u);
}

static gboolean on_status(gpointer p) {
  Update* u = (Update*)p;
  gtk_label_set_text(GTK_LABEL(app.status), u->text);
  g_free(u->text);
  g_free(u);
  return G_SOURCE_REMOVE;
}

static void post_status(char* owned) {
  Update* u = g_new0(Update, 1);
  u->text = owned;
  g_idle_add(on_status, u);
}

static void set_busy(gboolean busy) {
  app.busy = busy;
  if (busy) gtk_spinner_start(GTK_SPINNER(app.spinner));
  else gtk_spinner_stop(GTK_SPINNER(app.spinner));
  gtk_widget_set_sensitive(app.send, !busy && app.ctx != NULL);
  gtk_widget_set_sensitive(app.entry, !busy && app.ctx != NULL);
  gtk_widget_set_sensitive(app.open, !busy);
  gtk_widget_set_sensitive(app.stop, busy && app.ctx != NULL);
  if (!busy && app.ctx) gtk_widget_grab_focus(app.entry);
}

static void write_transcript(const char* text) {
  if (!app.transcript) return;
  FILE* f = fopen(app.transcript, "a");
  if (!f) return;
  fprintf(f, "%s\n", text);
  fclose(f);
}

/* ---- loading a model (worker thread) ---- */
typedef struct {
  char* path;
  llm_model* model;
  llm_context* ctx;
  char* error;
  int shown;
} Load;

static int load_progress(float f, void* user) {
  Load* l = (Load*)user;
  const int pct = (int)(f * 100.0f);
  if (pct != l->shown) {
    l->shown = pct;
    post_status(g_strdup_printf("Loading %s: %d%%", l->path, pct));
  }
  return 0;
}

static void free_engine(void) {
  llm_stream_free(app.stream);
  llm_sampler_free(app.sampler);
  llm_context_free(app.ctx);
  llm_model_free(app.model);
  app.stream = NULL, app.sampler = NULL, app.ctx = NULL, app.model = NULL;
  g_array_set_size(app.cache, 0);
  g_ptr_array_set_size(app.roles, 0);
  g_ptr_array_set_size(app.texts, 0);
}

static gboolean on_loaded(gpointer p) {
  Load* l = (Load*)p;
  if (l->error) {
    gtk_label_set_text(GTK_LABEL(app.status), l->error);
  } else {
    free_engine();
    app.model = l->model;
    app.ctx = l->ctx;
    llm_sampler_params sp = llm_sampler_default_params();
    sp.temp = app.temp;
    const char* stops[8];
    int32_t n = 0;
    while (n < 8 && llm_chat_stop_string(app.model, n)) stops[n] = llm_chat_stop_string(app.model, n), n++;
    if (llm_sampler_new(app.model, &sp, &app.sampler) != LLM_OK ||
        llm_stream_new(app.model, stops, n, &app.stream) != LLM_OK) {
      gtk_label_set_text(GTK_LABEL(app.status), llm_last_error());
      free_engine();
    } else {
      app.eos = llm_token_eos(app.model);
      app.eot = llm_token_eot(app.model);
      char desc[128], *base = g_path_get_basename(l->path);
      llm_model_desc(app.model, desc, sizeof desc);
      char* s = g_strdup_printf("%s (%s), %d tokens of context", base, desc, llm_n_ctx(app.ctx));
      gtk_label_set_text(GTK_LABEL(app.status), s);
      gtk_window_set_title(GTK_WINDOW(app.window), "llm chat");
      gtk_text_buffer_set_text(app.buffer, "", -1);
      g_free(s);
      g_free(base);
      printf("ready\n");
      fflush(stdout);
    }
  }
  g_free(l->path);
  g_free(l->error);
  g_free(l);
  set_busy(FALSE);
  return G_SOURCE_REMOVE;
}

static gpointer load_worker(gpointer p) {
  Load* l = (Load*)p;
  llm_model_params mp = llm_model_default_params();
  mp.progress = load_progress;
  mp.progress_user = l;
  if (llm_model_load_ex(l->path, &mp, &l->model) != LLM_OK) {
    l->error = g_strdup_printf("Cannot load the model: %s", llm_last_error());
  } else {
    llm_context_params cp = llm_context_default_params();
    cp.n_ctx = llm_model_n_ctx_train(l->model) < 2048 ? llm_model_n_ctx_train(l->model) : 2048;
    if (llm_context_new(l->model, &cp, &l->ctx) != LLM_OK) {
      l->error = g_strdup_printf("Cannot make a context: %s", llm_last_error());
      llm_model_free(l->model);
      l->model = NULL;
    }
  }
  g_idle_add(on_loaded, l);
  return NULL;
}

static void start_load(const char* path) {
  if (app.busy) return;
  Load* l = g_new0(Load, 1);
  l->path = g_strdup(path);
  l->shown = -1;
  set_busy(TRUE);
  gtk_widget_set_sensitive(app.stop, FALSE);  /* a load is not cancelled here */
  gtk_label_set_text(GTK_LABEL(app.status), "Loading...");
  g_thread_unref(g_thread_new("load", load_worker, l));
}

static void on_open_response(GtkNativeDialog* d, int response, gpointer user) {
  (void)user;
  if (response == GTK_RESPONSE_ACCEPT) {
    GFile* f = gtk_file_chooser_get_file(GTK_FILE_CHOOSER(d));
    char* path = f ? g_file_get_path(f) : NULL;
    if (path) start_load(path);
    g_free(path);
    if (f) g_object_unref(f);
  }
  g_object_unref(d);
}

static void on_open(GtkButton* b, gpointer user) {
  (void)b, (void)user;
  GtkFileChooserNative* d = gtk_file_chooser_native_new("Open a model", GTK_WINDOW(app.window),
                                                        GTK_FILE_CHOOSER_ACTION_OPEN, "_Open", "_Cancel");
  GtkFileFilter* filter = gtk_file_filter_new();
  gtk_file_filter_set_name(filter, "GGUF models");
  gtk_file_filter_add_pattern(filter, "*.gguf");
  gtk_file_chooser_add_filter(GTK_FILE_CHOOSER(d), filter);
  g_object_unref(filter);
  g_signal_connect(d, "response", G_CALLBACK(on_open_response), NULL);
  gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}

/* ---- answering (worker thread) ---- */
typedef struct {
  GString* answer;
  int n_gen;
  double seconds;
  gboolean stopped;
  char* error;
} Answer;

static gboolean on_answered(gpointer p) {
  Answer* a = (Answer*)p;
  if (a->error) {
    gtk_label_set_text(GTK_LABEL(app.status), a->error);
    write_transcript(a->error);
  } else {
    g_ptr_array_add(app.roles, (gpointer) "assistant");
    g_ptr_array_add(app.texts, g_strdup(a->answer->str));
    char* s = g_strdup_printf("%d tokens, %.1f tokens/s%s", a->n_gen, a->seconds > 0 ? a->n_gen / a->seconds : 0.0,
                              a->stopped ? " (stopped)" : "");
    gtk_label_set_text(GTK_LABEL(app.status), s);
    printf("status: %s\n", s);
    fflush(stdout);
    g_free(s);
    write_transcript(a->answer->str);
    if (a->stopped) write_transcript("[stopped]");
  }
  GtkTextIter end;
  gtk_text_buffer_get_end_iter(app.buffer, &end);
  gtk_text_buffer_insert(app.buffer, &end, a->stopped ? " [stopped]\n\n" : "\n\n", -1);
  g_string_free(a->answer, TRUE);
  g_free(a->error);
  g_free(a);
  set_busy(FALSE);
  return G_SOURCE_REMOVE;
}

static gpointer answer_worker(gpointer p) {
  Answer* a = (Answer*)p;
  const int32_t n_ctx = llm_n_ctx(app.ctx);
  const guint n_msg = app.roles->len;
  llm_chat_message* msgs = g_new(llm_chat_message, n_msg);
  for (guint i = 0; i < n_msg; i++) {
    msgs[i].role = (const char*)g_ptr_array_index(app.roles, i);
    msgs[i].content = (const char*)g_ptr_array_index(app.texts, i);
  }
  /* The whole conversation's tokens; only what the cache lacks is evaluated. */
  int32_t n = llm_chat_tokenize(app.model, msgs, (int32_t)n_msg, 1, 1, 1, NULL, 0);
  llm_token* ids = NULL;
  if (n != INT32_MIN) {
    n = n < 0 ? -n : n;
    ids = g_new(llm_token, n > 0 ? n : 1);
    n = llm_chat_tokenize(app.model, msgs, (int32_t)n_msg, 1, 1, 1, ids, n);
  }
  g_free(msgs);
  if (n == INT32_MIN || n <= 0) {
    a->error = g_strdup_printf("Chat template: %s", llm_last_error());
  } else if (n + 1 > n_ctx) {
    a->error = g_strdup("The conversation no longer fits the context: open the model again to start over");
  } else {
    const llm_token* cache = (const llm_token*)app.cache->data;
    int32_t keep = 0;
    while (keep < (int32_t)app.cache->len && keep < n - 1 && cache[keep] == ids[keep]) keep++;
    llm_rewind(app.ctx, keep);
    g_array_set_size(app.cache, (guint)keep);
    llm_status st = llm_eval(app.ctx, ids + keep, n - keep, 0);
    if (st == LLM_OK) {
      g_array_append_vals(app.cache, ids + keep, (guint)(n - keep));
      for (int32_t i = 0; i < n; i++) llm_sampler_accept(app.sampler, ids[i]);
      printf("answering\n");
      fflush(stdout);
      const gint64 t0 = g_get_monotonic_time();
      int stopped = 0;
      while (a->n_gen < app.max_tokens && (int32_t)app.cache->len < n_ctx) {
        const llm_token t = llm_sample(app.sampler, app.ctx);
        if (t < 0 || t == app.eos || t == app.eot) break;
        const char* text = llm_stream_push(app.stream, t, &stopped);
        if (text) {
          g_string_append(a->answer, text);
          post_text(text);
        }
        a->n_gen++;
        if (stopped) break;
        st = llm_eval(app.ctx, &t, 1, 0);
        if (st != LLM_OK) break;
        g_array_append_val(app.cache, t);
      }
      if (!stopped) {
        const char* rest = llm_stream_flush(app.stream);
        if (rest) {
          g_string_append(a->answer, rest);
          post_text(rest);
        }
      }
      a->seconds = (double)(g_get_monotonic_time() - t0) * 1e-6;
    }
    if (st == LLM_ERR_CANCELLED) {
      a->stopped = TRUE;
      g_array_set_size(app.cache, (guint)llm_n_past(app.ctx));
    } else if (st != LLM_OK) {
      a->error = g_strdup_printf("Evaluation failed: %s", llm_last_error());
    }
  }
  g_free(ids);
  g_idle_add(on_answered, a);
  return NULL;
}

static void on_send(GtkWidget* w, gpointer user) {
  (void)w, (void)user;
  if (app.busy || !app.ctx) return;
  const char* q = gtk_editable_get_text(GTK_EDITABLE(app.entry));
  if (!q || !*q) return;
  g_ptr_array_add(app.roles, (gpointer) "user");
  g_ptr_array_add(app.texts, g_strdup(q));
  GtkTextIter end;
  gtk_text_buffer_get_end_iter(app.buffer, &end);
  char* shown = g_strdup_printf("You: %s\nAssistant: ", q);
  gtk_text_buffer_insert(app.buffer, &end, shown, -1);
  g_free(shown);
  gtk_editable_set_text(GTK_EDITABLE(app.entry), "");
  llm_context_set_cancel(app.ctx, 0);
  Answer* a = g_new0(Answer, 1);
  a->answer = g_string_new(NULL);
  set_busy(TRUE);
  gtk_label_set_text(GTK_LABEL(app.status), "Thinking...");
  g_thread_unref(g_thread_new("answer", answer_worker, a));
}

static void on_stop(GtkWidget* w, gpointer user) {
  (void)w, (void)user;
  if (app.busy && app.ctx) llm_context_set_cancel(app.ctx, 1);  /* the worker's next node stops */
}

static gboolean on_key(GtkEventControllerKey* c, guint key, guint code, GdkModifierType mods, gpointer user) {
  (void)c, (void)code, (void)mods, (void)user;
  if (key == GDK_KEY_Escape) {
    on_stop(NULL, NULL);
    return TRUE;
  }
  return FALSE;
}

static char* g_model_arg = NULL;

static void on_activate(GtkApplication* gapp, gpointer user) {
  (void)user;
  app.window = gtk_application_window_new(gapp);
  gtk_window_set_title(GTK_WINDOW(app.window), "llm chat");
  gtk_window_set_default_size(GTK_WINDOW(app.window), 720, 520);

  GtkWidget* header = gtk_header_bar_new();
  app.open = gtk_button_new_with_mnemonic("_Open model...");
  g_signal_connect(app.open, "clicked", G_CALLBACK(on_open), NULL);
  gtk_header_bar_pack_start(GTK_HEADER_BAR(header), app.open);
  app.spinner = gtk_spinner_new();
  gtk_header_bar_pack_end(GTK_HEADER_BAR(header), app.spinner);
  gtk_window_set_titlebar(GTK_WINDOW(app.window), header);

  GtkWidget* box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_margin_start(box, 8);
  gtk_widget_set_margin_end(box, 8);
  gtk_widget_set_margin_top(box, 8);
  gtk_widget_set_margin_bottom(box, 8);
  app.view = gtk_text_view_new();
  gtk_text_view_set_editable(GTK_TEXT_VIEW(app.view), FALSE);
  gtk_text_view_set_cursor_visible(GTK_TEXT_VIEW(app.view), FALSE);
  gtk_text_view_set_wrap_mode(GTK_TEXT_VIEW(app.view), GTK_WRAP_WORD_CHAR);
  app.buffer = gtk_text_view_get_buffer(GTK_TEXT_VIEW(app.view));
  gtk_text_buffer_set_text(app.buffer, "Open a model (a .gguf file) to start.", -1);
  GtkWidget* scroll = gtk_scrolled_window_new();
  gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(scroll), app.view);
  gtk_widget_set_vexpand(scroll, TRUE);
  gtk_box_append(GTK_BOX(box), scroll);

  GtkWidget* row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
  app.entry = gtk_entry_new();
  gtk_entry_set_placeholder_text(GTK_ENTRY(app.entry), "Ask something and press Enter");
  gtk_widget_set_hexpand(app.entry, TRUE);
  g_signal_connect(app.entry, "activate", G_CALLBACK(on_send), NULL);
  app.send = gtk_button_new_with_mnemonic("_Send");
  g_signal_connect(app.send, "clicked", G_CALLBACK(on_send), NULL);
  app.stop = gtk_button_new_with_mnemonic("S_top");
  g_signal_connect(app.stop, "clicked", G_CALLBACK(on_stop), NULL);
  gtk_box_append(GTK_BOX(row), app.entry);
  gtk_box_append(GTK_BOX(row), app.send);
  gtk_box_append(GTK_BOX(row), app.stop);
  gtk_box_append(GTK_BOX(box), row);
  app.status = gtk_label_new("No model");
  gtk_label_set_xalign(GTK_LABEL(app.status), 0.0f);
  gtk_label_set_ellipsize(GTK_LABEL(app.status), PANGO_ELLIPSIZE_MIDDLE);
  gtk_box_append(GTK_BOX(box), app.status);
  gtk_window_set_child(GTK_WINDOW(app.window), box);

  GtkEventController* keys = gtk_event_controller_key_new();
  gtk_event_controller_set_propagation_phase(keys, GTK_PHASE_CAPTURE);
  g_signal_connect(keys, "key-pressed", G_CALLBACK(on_key), NULL);
  gtk_widget_add_controller(app.window, keys);

  set_busy(FALSE);
  gtk_window_present(GTK_WINDOW(app.window));
  if (g_model_arg) start_load(g_model_arg);
}

int main(int argc, char** argv) {
  app.temp = 0.7f;
  app.max_tokens = 512;
  for (int i = 1; i < argc; i++) {
    const int more = i + 1 < argc;
    if (!strcmp(argv[i], "--model") && more) g_model_arg = argv[++i];
    else if (!strcmp(argv[i], "--temp") && more) app.temp = (float)g_ascii_strtod(argv[++i], NULL);
    else if (!strcmp(argv[i], "-n") && more) app.max_tokens = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--transcript") && more) app.transcript = argv[++i];
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("usage: llm-chat [--model FILE.gguf] [--temp T] [-n MAX_TOKENS] [--transcript FILE]\n");
      return 0;
    } else {
      fprintf(stderr, "llm-chat: unknown or incomplete option '%s' (--help)\n", argv[i]);
      return 1;
    }
  }
  if (app.max_tokens <= 0) {
    fprintf(stderr, "llm-chat: -n must be positive\n");
    return 1;
  }
  app.cache = g_array_new(FALSE, FALSE, sizeof(llm_token));
  app.roles = g_ptr_array_new();
  app.texts = g_ptr_array_new_with_free_func(g_free);
  GtkApplication* gapp = gtk_application_new("org.llmengine.chat", G_APPLICATION_NON_UNIQUE);
  g_signal_connect(gapp, "activate", G_CALLBACK(on_activate), NULL);
  char* args[] = {argv[0], NULL};
  const int rc = g_application_run(G_APPLICATION(gapp), 1, args);
  free_engine();
  g_object_unref(gapp);
  return rc;
}
