#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "llm/error.h"
#include "llm/files.h"

#if defined(LLM_HAVE_CAIRO)
#include <cairo.h>

namespace {
// A step of 1, 2 or 5 times a power of ten giving about n ticks over span.
double nice_step(double span, int n) {
  const double raw = span / n, p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}
cairo_status_t to_file(void* closure, const unsigned char* data, unsigned int len) {
  return std::fwrite(data, 1, len, static_cast<std::FILE*>(closure)) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}
}  // namespace

bool plot_available() { return true; }

void plot_losses(const std::string& path, const std::string& title, const std::vector<std::pair<double, double>>& train,
                 const std::vector<std::pair<double, double>>& valid) {
  const int W = 900, H = 520, L = 70, R = 20, T = 40, B = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto* s : {&train, &valid})
    for (const auto& [x, y] : *s)
      if (std::isfinite(y)) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t* c = cairo_create(surf);
  cairo_set_source_rgb(c, 1, 1, 1);
  cairo_paint(c);
  cairo_select_font_face(c, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(c, 12);
  // grid and tick labels
  char buf[64];
  cairo_set_line_width(c, 1);
  const double ys = nice_step(y1 - y0, 6), xs = nice_step(x1 - x0, 8);
  for (double y = std::ceil(y0 / ys) * ys; y <= y1; y += ys) {
    cairo_set_source_rgb(c, 0.9, 0.9, 0.9);
    cairo_move_to(c, L, py(y));
    cairo_line_to(c, W - R, py(y));
    cairo_stroke(c);
    cairo_set_source_rgb(c, 0.2, 0.2, 0.2);
    std::snprintf(buf, sizeof buf, "%g", y);
    cairo_move_to(c, 8, py(y) + 4);
    cairo_show_text(c, buf);
  }
  for (double x = std::ceil(x0 / xs) * xs; x <= x1; x += xs) {
    cairo_set_source_rgb(c, 0.9, 0.9, 0.9);
    cairo_move_to(c, px(x), T);
    cairo_line_to(c, px(x), H - B);
    cairo_stroke(c);
    cairo_set_source_rgb(c, 0.2, 0.2, 0.2);
    std::snprintf(buf, sizeof buf, "%g", x);
    cairo_move_to(c, px(x) - 8, H - B + 18);
    cairo_show_text(c, buf);
  }
  cairo_set_source_rgb(c, 0, 0, 0);
  cairo_rectangle(c, L, T, W - L - R, H - T - B);
  cairo_stroke(c);
  cairo_move_to(c, W / 2.0 - 20, H - 12);
  cairo_show_text(c, "step");
  cairo_set_font_size(c, 14);
  cairo_move_to(c, L, 24);
  cairo_show_text(c, title.c_str());
  // the curves: training loss as a line, validation loss as points joined
  auto curve = [&](const std::vector<std::pair<double, double>>& s, double r, double g, double b, bool dots) {
    cairo_set_source_rgb(c, r, g, b);
    cairo_set_line_width(c, dots ? 2 : 1.5);
    bool first = true;
    for (const auto& [x, y] : s) {
      if (!std::isfinite(y)) continue;
      if (first) cairo_move_to(c, px(x), py(y));
      else cairo_line_to(c, px(x), py(y));
      first = false;
    }
    cairo_stroke(c);
    if (dots)
      for (const auto& [x, y] : s) {
        cairo_arc(c, px(x), py(y), 3.5, 0, 2 * M_PI);
        cairo_fill(c);
      }
  };
  curve(train, 0.12, 0.47, 0.71, false);
  curve(valid, 0.84, 0.37, 0.0, true);
  // legend
  cairo_set_font_size(c, 12);
  const double lx = W - R - 170, ly = T + 18;
  cairo_set_source_rgb(c, 0.12, 0.47, 0.71);
  cairo_rectangle(c, lx, ly - 8, 18, 3);
  cairo_fill(c);
  cairo_move_to(c, lx + 24, ly - 3);
  cairo_show_text(c, "training loss");
  if (!valid.empty()) {
    cairo_set_source_rgb(c, 0.84, 0.37, 0.0);
    cairo_arc(c, lx + 9, ly + 12, 3.5, 0, 2 * M_PI);
    cairo_fill(c);
    cairo_move_to(c, lx + 24, ly + 16);
    cairo_show_text(c, "validation loss");
  }
  cairo_destroy(c);
  llm::OutputFile out(path);
  const cairo_status_t st = cairo_surface_write_to_png_stream(surf, to_file, out.stream());
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS) throw llm::Error("cannot write the plot " + path);
  out.commit();
}
#else
bool plot_available() { return false; }
void plot_losses(const std::string&, const std::string&, const std::vector<std::pair<double, double>>&,
                 const std::vector<std::pair<double, double>>&) {
  throw llm::Error("--plot: this build has no cairo (scripts/install-deps.sh installs libcairo2-dev)");
}
#endif
