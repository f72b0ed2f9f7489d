// Errors of the snapshots service, by the gRPC status code containerd reads them by (its errdefs:
// NotFound, AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable).
import { status } from '@grpc/grpc-js';

export class SnapshotError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (message: string) => new SnapshotError(status.NOT_FOUND, message);
export const alreadyExists = (message: string) => new SnapshotError(status.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string) => new SnapshotError(status.FAILED_PRECONDITION, message);
export const invalidArgument = (message: string) => new SnapshotError(status.INVALID_ARGUMENT, message);
export const unavailable = (message: string) => new SnapshotError(status.UNAVAILABLE, message);
