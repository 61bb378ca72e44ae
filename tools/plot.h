#pragma once
// Loss curves as a PNG, drawn with cairo.
#include <string>
#include <utility>
#include <vector>

// Points are (step, loss). Written atomically. Throws llm::Error when the
// tools were built without cairo or the file cannot be written.
void plot_losses(const std::string& path, const std::string& title, const std::vector<std::pair<double, double>>& train,
                 const std::vector<std::pair<double, double>>& valid);
bool plot_available();
