# Imported targets for dtrain's Debian dependencies. Included by the build and by the
# installed dtrainConfig.cmake, so consumers resolve the same libraries.
include_guard(GLOBAL)

if(NOT TARGET dtrain_deps::xxhash)
  find_path(DTRAIN_XXHASH_INCLUDE_DIR xxhash.h)
  find_library(DTRAIN_XXHASH_LIBRARY NAMES xxhash)
  if(NOT DTRAIN_XXHASH_INCLUDE_DIR OR NOT DTRAIN_XXHASH_LIBRARY)
    message(FATAL_ERROR "dtrain needs xxHash (Debian: apt-get install libxxhash-dev)")
  endif()
  add_library(dtrain_deps::xxhash UNKNOWN IMPORTED)
  set_target_properties(dtrain_deps::xxhash PROPERTIES
    IMPORTED_LOCATION "${DTRAIN_XXHASH_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_XXHASH_INCLUDE_DIR}")
endif()

if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
endif()

if(NOT TARGET Threads::Threads)
  find_package(Threads REQUIRED)
endif()
