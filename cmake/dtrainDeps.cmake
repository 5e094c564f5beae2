# Imported targets for dtrain's Debian dependencies. Included by the build and by the
# installed dtrainConfig.cmake, so consumers resolve the same libraries.
include_guard(GLOBAL)

# dtrain_import_library(NAME HEADER LIBRARY WHAT DEBIAN_PACKAGE): the imported target
# dtrain_deps::NAME for a plain C library found by its header and library file, or a
# fatal error naming the Debian package to install.
function(dtrain_import_library name header library what package)
  if(TARGET dtrain_deps::${name})
    return()
  endif()
  string(TOUPPER ${name} upper)
  find_path(DTRAIN_${upper}_INCLUDE_DIR ${header})
  find_library(DTRAIN_${upper}_LIBRARY NAMES ${library})
  if(NOT DTRAIN_${upper}_INCLUDE_DIR OR NOT DTRAIN_${upper}_LIBRARY)
    message(FATAL_ERROR "dtrain needs ${what} (Debian: apt-get install ${package})")
  endif()
  add_library(dtrain_deps::${name} UNKNOWN IMPORTED)
  set_target_properties(dtrain_deps::${name} PROPERTIES
    IMPORTED_LOCATION "${DTRAIN_${upper}_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_${upper}_INCLUDE_DIR}")
endfunction()

dtrain_import_library(xxhash xxhash.h xxhash "xxHash" libxxhash-dev)

if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
endif()

if(NOT TARGET Threads::Threads)
  find_package(Threads REQUIRED)
endif()

# libsodium: Ed25519 identities and signatures (membership layer).
dtrain_import_library(sodium sodium.h sodium "libsodium" libsodium-dev)

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
dtrain_import_library(isal isa-l/erasure_code.h isal "ISA-L" libisal-dev)

# zstd: delta coding of shard chunks against the previous version. Used only inside
# dtrain's .cpp files.
dtrain_import_library(zstd zstd.h zstd "zstd" libzstd-dev)

# libcurl: HTTP range requests of the shard distribution (origin, relays, clients).
if(NOT TARGET CURL::libcurl)
  find_package(CURL 7.68 REQUIRED)
endif()
