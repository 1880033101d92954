/** @file chimaera.h  Umbrella header for applications. */
#ifndef CHIMAERA_CHIMAERA_H
#define CHIMAERA_CHIMAERA_H

#include "admin.h"
#include "client.h"
#include "pool_query.h"
#include "task.h"

#define CHIMAERA_VERSION_MAJOR 0
#define CHIMAERA_VERSION_MINOR 1

#endif
