# dtrain_set_warnings(target): the warning set every dtrain target compiles with.
function(dtrain_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Wdouble-promotion
    -Wimplicit-fallthrough
    # GCC 12 reports false -Wrestrict on std::string concatenation at -O3 (GCC PR 105651).
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
  if(DTRAIN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
