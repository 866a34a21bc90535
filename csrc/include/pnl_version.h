#ifndef PNL_VERSION_H
#define PNL_VERSION_H

#define PNL_VERSION_STRING "0.1.0"

/* The C library's version string. */
const char *pnl_version(void);

#endif
