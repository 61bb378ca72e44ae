#pragma once
// Written by CMake at configure time (tools/CMakeLists.txt).
#define LLM_VERSION "0.3.0"
#define LLM_GIT_COMMIT "c8f14063a3"
