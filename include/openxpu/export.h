/* Symbol visibility for the public API: the library is built with hidden
 * visibility and exports only what is marked OX_API. */
#ifndef OPENXPU_EXPORT_H
#define OPENXPU_EXPORT_H

#if defined(_WIN32)
#  if defined(OX_BUILDING_LIBRARY)
#    define OX_API __declspec(dllexport)
#  else
#    define OX_API
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define OX_API __attribute__((visibility("default")))
#else
#  define OX_API
#endif

#endif /* OPENXPU_EXPORT_H */
