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

# libsodium: Ed25519 identities and signatures (membership layer).
if(NOT TARGET dtrain_deps::sodium)
  find_path(DTRAIN_SODIUM_INCLUDE_DIR sodium.h)
  find_library(DTRAIN_SODIUM_LIBRARY NAMES sodium)
  if(NOT DTRAIN_SODIUM_INCLUDE_DIR OR NOT DTRAIN_SODIUM_LIBRARY)
    message(FATAL_ERROR "dtrain needs libsodium (Debian: apt-get install libsodium-dev)")
  endif()
  add_library(dtrain_deps::sodium UNKNOWN IMPORTED)
  set_target_properties(dtrain_deps::sodium PROPERTIES
    IMPORTED_LOCATION "${DTRAIN_SODIUM_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_SODIUM_INCLUDE_DIR}")
endif()

# Standalone asio (header-only): the TCP transport and the membership control plane.
# Used only inside dtrain's .cpp files; public headers never include it.
if(NOT TARGET dtrain_deps::asio)
  find_path(DTRAIN_ASIO_INCLUDE_DIR asio.hpp)
  if(NOT DTRAIN_ASIO_INCLUDE_DIR)
    message(FATAL_ERROR "dtrain needs standalone asio (Debian: apt-get install libasio-dev)")
  endif()
  add_library(dtrain_deps::asio INTERFACE IMPORTED)
  set_target_properties(dtrain_deps::asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED")
endif()

# ISA-L: Reed-Solomon erasure coding (shard layer). Used only inside dtrain's .cpp files.
if(NOT TARGET dtrain_deps::isal)
  find_path(DTRAIN_ISAL_INCLUDE_DIR isa-l/erasure_code.h)
  find_library(DTRAIN_ISAL_LIBRARY NAMES isal)
  if(NOT DTRAIN_ISAL_INCLUDE_DIR OR NOT DTRAIN_ISAL_LIBRARY)
    message(FATAL_ERROR "dtrain needs ISA-L (Debian: apt-get install libisal-dev)")
  endif()
  add_library(dtrain_deps::isal UNKNOWN IMPORTED)
  set_target_properties(dtrain_deps::isal PROPERTIES
    IMPORTED_LOCATION "${DTRAIN_ISAL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_ISAL_INCLUDE_DIR}")
endif()

# zstd: delta coding of shard chunks against the previous version. Used only inside
# dtrain's .cpp files.
if(NOT TARGET dtrain_deps::zstd)
  find_path(DTRAIN_ZSTD_INCLUDE_DIR zstd.h)
  find_library(DTRAIN_ZSTD_LIBRARY NAMES zstd)
  if(NOT DTRAIN_ZSTD_INCLUDE_DIR OR NOT DTRAIN_ZSTD_LIBRARY)
    message(FATAL_ERROR "dtrain needs zstd (Debian: apt-get install libzstd-dev)")
  endif()
  add_library(dtrain_deps::zstd UNKNOWN IMPORTED)
  set_target_properties(dtrain_deps::zstd PROPERTIES
    IMPORTED_LOCATION "${DTRAIN_ZSTD_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_ZSTD_INCLUDE_DIR}")
endif()

# libcurl: HTTP range requests of the shard distribution (origin, relays, clients).
if(NOT TARGET CURL::libcurl)
  find_package(CURL 7.68 REQUIRED)
endif()
