/* Version of the C library, so the Python layer can check it loaded the build it expects. */
#include "pnl_version.h"

const char *pnl_version(void)
{
	return PNL_VERSION_STRING;
}
