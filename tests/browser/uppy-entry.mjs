// The browser bundle of the pinned Uppy packages (built by uppy.test.mjs with esbuild): Uppy's
// core and its S3 plugin, exposed as globals for the test page.
import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';

globalThis.Uppy = Uppy;
globalThis.AwsS3 = AwsS3;
